"""The data set loaders, each on a small fixture written in its published layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relabscope.data import affectnet, fer2013, ferplus, imagefolder, load_dataset, rafdb
from relabscope.errors import DataError

RAF_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")


def write_image(path: Path, size: tuple[int, int], colour, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


def check_item(ds, index: int, channels: int, side: int) -> None:
    image, i = ds[index]
    assert i == index
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8
    assert tuple(image.shape) == (channels, side, side)


# ---------------------------------------------------------------- RAF-DB


def make_rafdb(root: Path, train_labels, test_labels) -> None:
    lines = [f"train_{i + 1:05d}.jpg {y}" for i, y in enumerate(train_labels)]
    lines += [f"test_{i + 1:04d}.jpg {y}" for i, y in enumerate(test_labels)]
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = line.split()[0][:-4]
        write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", (100, 100), (200, 10, 10))


def test_rafdb_layout(tmp_path):
    train = [1, 2, 3, 4, 5, 6, 7, 4, 4, 7, 1, 5]
    test = [3, 4, 7, 1, 2, 6]
    make_rafdb(tmp_path, train, test)
    splits = load_dataset("rafdb", tmp_path)
    tr, te = splits.train, splits.test
    assert (len(tr), len(te)) == (12, 6)
    assert tr.class_names == RAF_NAMES and splits.class_names == RAF_NAMES
    assert tr.keys[0] == "Image/aligned/train_00001_aligned.jpg"
    assert te.keys[-1] == "Image/aligned/test_0006_aligned.jpg"
    assert tr.labels.tolist() == [y - 1 for y in train]
    assert te.labels.tolist() == [y - 1 for y in test]
    assert (tr.channels, tr.native_size, tr.split, te.split) == (3, 100, "train", "test")
    check_item(tr, 3, 3, 100)
    image, _ = tr[0]
    assert abs(int(image[0].float().mean()) - 200) < 10  # the red we wrote
    tr.size = 32
    check_item(tr, 3, 3, 32)
    tr.check_labels("test")
    te.check_labels("test")


def test_rafdb_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        rafdb.load(tmp_path / "nowhere")
    with pytest.raises(DataError) as err:
        rafdb.load(tmp_path)
    assert "EmoLabel/list_patition_label.txt: file not found (rafdb layout)" in str(err.value)

    make_rafdb(tmp_path, [1, 2, 3], [4])
    (tmp_path / "Image" / "aligned").rename(tmp_path / "Image" / "elsewhere")
    with pytest.raises(DataError, match=r"Image/aligned: folder not found \(rafdb layout\)"):
        rafdb.load(tmp_path)
    (tmp_path / "Image" / "elsewhere").rename(tmp_path / "Image" / "aligned")
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(
        "train_00001.jpg 1\ntrain_00002.jpg 2\ntrain_00003.jpg 8\ntest_0001.jpg 4\n"
    )
    with pytest.raises(DataError, match=r"list_patition_label\.txt:3: label 8 is out of range"):
        rafdb.load(tmp_path)
    label_file.write_text("train_00001.jpg 0\n")
    with pytest.raises(DataError, match=r":1: label 0 is out of range"):
        rafdb.load(tmp_path)
    label_file.write_text("train_00001.jpg 1\nval_00002.jpg 2\n")
    with pytest.raises(DataError, match=r":2: image name"):
        rafdb.load(tmp_path)
    label_file.write_text("\n\n")
    with pytest.raises(DataError, match="no labelled images"):
        rafdb.load(tmp_path)


# ---------------------------------------------------------------- FER2013

USAGE_CYCLE = ["Training", "Training", "Training", "PublicTest", "PrivateTest"]


def fer_rows(n: int, seed: int = 0):
    """(emotion, pixels 48x48 uint8, usage) for ``n`` rows."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    pixels[0, 0, :4] = [0, 9, 10, 255]  # 1, 2 and 3 digit values side by side
    emotion = rng.integers(0, 7, size=n)
    usage = [USAGE_CYCLE[i % len(USAGE_CYCLE)] for i in range(n)]
    return emotion, pixels, usage


def write_fer_csv(path: Path, emotion, pixels, usage, newline: str = "\n") -> None:
    lines = ["emotion,pixels,Usage"]
    for e, p, u in zip(emotion, pixels, usage):
        lines.append(f"{e},{' '.join(str(int(v)) for v in p.ravel())},{u}")
    path.write_bytes((newline.join(lines) + newline).encode())


def test_fer2013_layout(tmp_path):
    emotion, pixels, usage = fer_rows(30)
    write_fer_csv(tmp_path / "fer2013.csv", emotion, pixels, usage)
    splits = load_dataset("fer2013", tmp_path)
    usage = np.asarray(usage)
    train_rows = np.flatnonzero(usage == "Training")
    private_rows = np.flatnonzero(usage == "PrivateTest")
    tr, te = splits.train, splits.test
    assert (len(tr), len(te)) == (18, 6)
    assert tr.keys == [f"fer2013.csv#{i}" for i in train_rows]
    assert te.keys == [f"fer2013.csv#{i}" for i in private_rows]
    assert tr.labels.tolist() == emotion[train_rows].tolist()
    assert tr.class_names == ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
    assert (tr.channels, tr.native_size) == (1, 48)
    assert np.array_equal(tr.source.array()[..., 0], pixels[train_rows])
    image, i = te[2]
    assert i == 2 and image.dtype == torch.uint8 and tuple(image.shape) == (1, 48, 48)
    assert np.array_equal(image[0].numpy(), pixels[private_rows[2]])
    te.size = 32
    check_item(te, 2, 1, 32)

    public = fer2013.load(tmp_path, test_split="public").test
    assert public.keys == [f"fer2013.csv#{i}" for i in np.flatnonzero(usage == "PublicTest")]
    with pytest.raises(DataError, match="test_split"):
        fer2013.load(tmp_path, test_split="both")


def test_fer2013_chunks_crlf_and_quotes(tmp_path, monkeypatch):
    """Many small chunks (threads), Windows line ends, a quoted field, a blank last line."""
    monkeypatch.setattr(fer2013, "_CHUNK_ROWS", 4)
    emotion, pixels, usage = fer_rows(23, seed=1)
    path = tmp_path / "fer2013.csv"
    write_fer_csv(path, emotion, pixels, usage, newline="\r\n")
    text = path.read_bytes().replace(b"\r\n5,", b'\r\n"5",', 1) + b"\r\n"
    path.write_bytes(text)
    table = fer2013.read_fer2013_csv(path)
    assert np.array_equal(table.pixels, pixels)
    assert table.emotion.tolist() == emotion.tolist()
    assert table.line_numbers.tolist() == list(range(2, 25))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.rsplit(" ", 1)[0], "expected 2304 pixel values, found 2303"),
        (lambda p: p + " 7", "expected 2304 pixel values, found 2305"),
        (lambda p: p.replace(" ", " 256 ", 1), "pixel value 256 is out of range"),
        (lambda p: p.replace(" ", " 1234 ", 1), "pixel value 1234 is out of range"),
        (lambda p: p.replace(" ", " -3 ", 1), "pixel value '-3' is not an integer"),
        (lambda p: p.replace(" ", " 1.5 ", 1), "pixel value '1.5' is not an integer"),
    ],
)
def test_fer2013_bad_pixels(tmp_path, monkeypatch, change, message):
    monkeypatch.setattr(fer2013, "_CHUNK_ROWS", 4)
    emotion, pixels, usage = fer_rows(12)
    path = tmp_path / "fer2013.csv"
    write_fer_csv(path, emotion, pixels, usage)
    lines = path.read_text().splitlines()
    e, p, u = lines[9].split(",")  # data row 8, line 10, in the third chunk
    lines[9] = ",".join([e, change(p), u])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        fer2013.load(tmp_path)
    assert f"fer2013.csv:10: {message}" in str(err.value)


def test_fer2013_bad_rows(tmp_path):
    emotion, pixels, usage = fer_rows(6)
    emotion[3] = 7
    write_fer_csv(tmp_path / "fer2013.csv", emotion, pixels, usage)
    with pytest.raises(DataError, match=r"fer2013\.csv:5: emotion 7 is out of range 0\.\.6"):
        fer2013.load(tmp_path)
    emotion[3] = 1
    usage[2] = "Validation"
    write_fer_csv(tmp_path / "fer2013.csv", emotion, pixels, usage)
    with pytest.raises(DataError, match=r"fer2013\.csv:4: Usage 'Validation'"):
        fer2013.load(tmp_path)
    (tmp_path / "fer2013.csv").write_text("emotion,pixels\n")
    with pytest.raises(DataError, match=r"fer2013\.csv:1: header has no 'usage' column"):
        fer2013.load(tmp_path)
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataError, match="no data rows"):
        fer2013.load(tmp_path)
    (tmp_path / "fer2013.csv").unlink()
    with pytest.raises(DataError, match=r"fer2013\.csv: file not found \(fer2013 layout\)"):
        fer2013.load(tmp_path)


# ---------------------------------------------------------------- FERPlus

VOTE_HEADER = [
    "Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger",
    "disgust", "fear", "contempt", "unknown", "NF",
]  # fmt: skip

# (votes, image name present); winners computed independently in expected_ferplus
FERPLUS_ROWS = [
    ([10, 0, 0, 0, 0, 0, 0, 0, 0, 0], True),  # clear neutral
    ([0, 6, 2, 0, 0, 0, 0, 0, 2, 0], True),  # happiness 6 of 10
    ([4, 1, 1, 1, 1, 1, 1, 0, 0, 0], True),  # 4/10 before zeroing, 4/4 after: neutral
    ([3, 3, 2, 2, 0, 0, 0, 0, 0, 0], True),  # no majority: dropped
    ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], True),  # tie at exactly half: dropped
    ([0, 0, 0, 0, 0, 0, 0, 0, 8, 2], True),  # unknown wins: dropped
    ([0, 0, 0, 0, 0, 0, 0, 0, 1, 9], True),  # NF wins: dropped
    ([0, 0, 0, 0, 0, 0, 0, 7, 3, 0], True),  # contempt: class 7
    ([10, 0, 0, 0, 0, 0, 0, 0, 0, 0], False),  # empty image name: skipped
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], True),  # everything zeroed: dropped
    ([0, 0, 9, 0, 0, 0, 0, 0, 0, 1], True),  # surprise
    ([0, 0, 0, 2, 0, 0, 0, 0, 0, 0], True),  # sadness alone
    ([0, 0, 0, 0, 6, 4, 0, 0, 0, 0], True),  # anger 6 vs disgust 4
    ([0, 0, 0, 0, 0, 3, 3, 0, 0, 0], True),  # disgust/fear tie: dropped
    ([0, 0, 0, 0, 0, 0, 7, 0, 0, 3], True),  # fear
    ([2, 2, 2, 0, 0, 0, 0, 0, 0, 0], True),  # no majority: dropped
    ([0, 8, 0, 0, 0, 0, 0, 0, 0, 0], False),  # empty image name: skipped
    ([0, 0, 0, 0, 0, 7, 1, 1, 1, 0], True),  # disgust 7/7 after zeroing
    ([0, 9, 1, 0, 0, 0, 0, 0, 0, 0], True),  # happiness
    ([0, 0, 0, 0, 0, 0, 0, 0, 10, 0], True),  # unknown: dropped
]


def expected_ferplus(rows):
    """{row: label} by the majority rule, written out the long way."""
    kept = {}
    for row, (votes, named) in enumerate(rows):
        if not named:
            continue
        v = [c if c > 1 else 0 for c in votes]
        best = max(range(10), key=lambda j: v[j])
        if v[best] * 2 > sum(v) and best < 8:
            kept[row] = best
    return kept


def make_ferplus(root: Path, rows, usage):
    emotion, pixels, _ = fer_rows(len(rows), seed=2)
    write_fer_csv(root / "fer2013.csv", emotion, pixels, usage)
    with open(root / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(VOTE_HEADER)
        for i, (votes, named) in enumerate(rows):
            w.writerow([usage[i], f"fer{i:07d}.png" if named else "", *votes])
    return pixels


def test_ferplus_majority_rule(tmp_path):
    n = len(FERPLUS_ROWS)
    usage = ["Training"] * 12 + ["PublicTest"] * 4 + ["PrivateTest"] * 4
    pixels = make_ferplus(tmp_path, FERPLUS_ROWS, usage)
    expected = expected_ferplus(FERPLUS_ROWS)
    assert sorted(expected) == [0, 1, 2, 7, 10, 11, 12, 14, 17, 18]
    splits = load_dataset("ferplus", tmp_path)
    tr, te = splits.train, splits.test
    names = ("Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear", "Contempt")
    assert tr.class_names == names and tr.num_classes == 8
    train_rows = [r for r in expected if usage[r] == "Training"]
    private_rows = [r for r in expected if usage[r] == "PrivateTest"]
    assert tr.keys == [f"fer2013.csv#{r}" for r in train_rows]
    assert tr.labels.tolist() == [expected[r] for r in train_rows]
    assert te.keys == [f"fer2013.csv#{r}" for r in private_rows]
    assert te.labels.tolist() == [expected[r] for r in private_rows]
    votes = tr.extras["votes"]
    assert votes.dtype == np.int16 and votes.shape == (len(train_rows), 10)
    assert tr.extras["votes"].tolist() == [FERPLUS_ROWS[r][0] for r in train_rows]
    assert (tr.channels, tr.native_size) == (1, 48)
    image, i = tr[1]
    assert i == 1 and np.array_equal(image[0].numpy(), pixels[train_rows[1]])
    tr.size = 32
    check_item(tr, 1, 1, 32)
    public = ferplus.load(tmp_path, test_split="public").test
    assert public.keys == [f"fer2013.csv#{r}" for r in expected if usage[r] == "PublicTest"]
    all_named = [(votes, True) for votes, _ in FERPLUS_ROWS]
    by_rule = expected_ferplus(all_named)
    assert ferplus.majority_labels(np.array([v for v, _ in all_named])).tolist() == [
        by_rule.get(r, -1) for r in range(n)
    ]


def test_ferplus_errors(tmp_path):
    usage = ["Training"] * 5
    make_ferplus(tmp_path, FERPLUS_ROWS[:5], usage)
    (tmp_path / "fer2013.csv").rename(tmp_path / "other.csv")
    with pytest.raises(DataError, match=r"fer2013\.csv: file not found \(ferplus layout\)"):
        ferplus.load(tmp_path)
    (tmp_path / "other.csv").rename(tmp_path / "fer2013.csv")
    lines = (tmp_path / "fer2013new.csv").read_text().splitlines()
    with open(tmp_path / "fer2013new.csv", "w") as f:
        f.write("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="4 data rows but .* has 5"):
        ferplus.load(tmp_path)
    bad = lines[:3] + [lines[3].replace("Training", "PublicTest")] + lines[4:]
    (tmp_path / "fer2013new.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError, match=r"fer2013new\.csv:4: Usage PublicTest but row 2"):
        ferplus.load(tmp_path)
    bad = lines[:2] + [lines[2].replace(",6,", ",x,")] + lines[3:]
    (tmp_path / "fer2013new.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError, match=r"fer2013new\.csv:3: vote counts must be integers"):
        ferplus.load(tmp_path)


# ---------------------------------------------------------------- AffectNet

AFFECT_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
    "expression,valence,arousal"
)


def make_affectnet(root: Path, expressions, nested: bool = True, n_val: int = 4):
    """Images 40x30, grey, with a red face box at a per-row position."""
    lists = root / "Manually_Annotated_file_lists" if nested else root
    images = root / "Manually_Annotated_Images" if nested else root
    lists.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, e in enumerate(expressions):
        rel = f"{i % 3 + 1}/img_{i:03d}.png"
        x, y, w, h = 2 + i % 5, 3 + i % 4, 10 + i % 3, 12
        im = Image.new("RGB", (40, 30), (128, 128, 128))
        im.paste((255, 0, 0), (x, y, x + w, y + h))
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        im.save(images / rel)
        landmarks = ";".join(f"{v:.2f}" for v in np.linspace(1, 30, 136))
        line = f"{rel},{x},{y},{w},{h},{landmarks},{e},{i / 100 - 0.2:.3f},{0.5 - i / 50:.3f}"
        rows.append((rel, (x, y, w, h), e, line))
    train, val = rows[:-n_val], rows[-n_val:]
    (lists / "training.csv").write_text("\n".join([AFFECT_HEADER] + [r[3] for r in train]) + "\n")
    (lists / "validation.csv").write_text("\n".join([AFFECT_HEADER] + [r[3] for r in val]) + "\n")
    return train, val


AFFECT_EXPRESSIONS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 7, 6, 0, 9, 3, 7, 2, 5]


@pytest.mark.parametrize("nested", [True, False])
def test_affectnet_layout(tmp_path, nested):
    train, val = make_affectnet(tmp_path, AFFECT_EXPRESSIONS, nested=nested)
    splits = load_dataset("affectnet", tmp_path)
    tr, te = splits.train, splits.test
    want = [r for r in train if r[2] < 7]
    assert tr.keys == [r[0] for r in want]
    assert tr.labels.tolist() == [r[2] for r in want]
    assert te.keys == [r[0] for r in val if r[2] < 7]
    names = ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger")
    assert tr.class_names == names
    assert tr.channels == 3 and tr.native_size is None
    assert tr.source.boxes.tolist() == [list(r[1]) for r in want]
    rows = [i for i, e in enumerate(AFFECT_EXPRESSIONS[: len(train)]) if e < 7]
    assert np.allclose(tr.extras["valence"], [i / 100 - 0.2 for i in rows], atol=1e-6)
    assert np.allclose(tr.extras["arousal"], [0.5 - i / 50 for i in rows], atol=1e-6)
    assert tr.extras["valence"].dtype == np.float32
    for k, (_, (x, y, w, h), _, _) in enumerate(want):
        crop = tr.load(k)
        assert crop.shape == (h, w, 3)
        assert (crop == [255, 0, 0]).all()  # only the red box, nothing of the grey around it
    tr.size = 32
    check_item(tr, 0, 3, 32)

    eight = load_dataset("affectnet8", tmp_path)
    want8 = [r for r in train if r[2] < 8]
    assert eight.train.keys == [r[0] for r in want8]
    assert eight.train.labels.tolist() == [r[2] for r in want8]
    assert eight.class_names[-1] == "Contempt" and len(eight.class_names) == 8


def test_affectnet_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        affectnet.load(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"file_lists/training\.csv: file not found"):
        affectnet.load(tmp_path)
    make_affectnet(tmp_path, AFFECT_EXPRESSIONS)
    lists = tmp_path / "Manually_Annotated_file_lists"
    (lists / "validation.csv").unlink()
    with pytest.raises(DataError, match=r"validation\.csv: file not found"):
        affectnet.load(tmp_path)
    with pytest.raises(DataError, match="num_classes must be 7 or 8"):
        affectnet.load(tmp_path, num_classes=5)
    lines = (lists / "training.csv").read_text().splitlines()
    (lists / "validation.csv").write_text("\n".join(lines[:3]) + "\n")
    fields = lines[4].split(",")
    fields[6] = "happy"
    lines[4] = ",".join(fields)
    (lists / "training.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"training\.csv:5: expression 'happy' is not a number"):
        affectnet.load(tmp_path)
    lines[4] = ",".join(fields[:3])
    (lists / "training.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"training\.csv:5: expected 9 fields, found 3"):
        affectnet.load(tmp_path)


def test_affectnet_quoted_lines_and_other_column_order(tmp_path):
    rows = [
        'x.png,1,2,3,4,"1.0,2.0;3.0",2,0.5,-0.5',  # a comma inside a quoted field
        '"y.png",0,0,5,6,1;2,7,0.25,0.75',  # a quoted path
        "",  # a blank line
        "z.png,1,1,2,2,1;2,9,0,0",  # expression 9: dropped
    ]
    (tmp_path / "training.csv").write_text(AFFECT_HEADER + "\n" + "\n".join(rows) + "\n")
    table = affectnet.read_list(tmp_path / "training.csv")
    assert table["path"].tolist() == ["x.png", "y.png", "z.png"]
    assert table["box"].tolist() == [[1, 2, 3, 4], [0, 0, 5, 6], [1, 1, 2, 2]]
    assert table["expression"].tolist() == [2, 7, 9]
    assert table["line"].tolist() == [2, 3, 5]
    assert np.allclose(table["valence"], [0.5, 0.25, 0.0])
    # columns in another order are found by name
    (tmp_path / "validation.csv").write_text(
        "expression,subDirectory_filePath,valence,arousal,face_x,face_y,face_width,face_height\n"
        "3,v.png,0.1,0.2,5,6,7,8\n"
    )
    splits = affectnet.load(tmp_path, num_classes=8)
    assert splits.train.keys == ["x.png", "y.png"] and splits.train.labels.tolist() == [2, 7]
    assert splits.test.keys == ["v.png"] and splits.test.labels.tolist() == [3]
    assert splits.test.source.boxes.tolist() == [[5, 6, 7, 8]]
    assert splits.train.name == "affectnet8"


# ---------------------------------------------------------------- image folder


def test_imagefolder_layout(tmp_path):
    files = {
        "train/happy/b.jpg": (10, 10),
        "train/happy/a.PNG": (12, 8),
        "train/angry/x.jpeg": (20, 20),
        "train/angry/sub/y.bmp": (9, 9),
        "train/neutral/z.webp": (16, 16),
        "test/happy/t1.png": (10, 10),
        "test/angry/t2.JPG": (10, 10),
    }
    for rel, size in files.items():
        ext = rel.rsplit(".", 1)[1].lower()
        fmt = {"jpg": "JPEG", "png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "webp": "WEBP"}[ext]
        write_image(tmp_path / rel, size, (0, 200, 0), fmt)
    (tmp_path / "train" / "happy" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / ".cache").mkdir()
    splits = load_dataset("imagefolder", tmp_path)
    tr, te = splits.train, splits.test
    assert tr.class_names == ("angry", "happy", "neutral")
    assert tr.keys == [
        "train/angry/sub/y.bmp",
        "train/angry/x.jpeg",
        "train/happy/a.PNG",
        "train/happy/b.jpg",
        "train/neutral/z.webp",
    ]
    assert tr.labels.tolist() == [0, 0, 1, 1, 2]
    assert te.keys == ["test/angry/t2.JPG", "test/happy/t1.png"]
    assert te.labels.tolist() == [0, 1]
    assert tr.native_size is None and tr.channels == 3
    tr.size = 32
    for i in range(len(tr)):
        check_item(tr, i, 3, 32)

    write_image(tmp_path / "test" / "surprised" / "s.png", (10, 10), (0, 0, 0))
    with pytest.raises(DataError, match="class 'surprised' is not among the training classes"):
        imagefolder.load(tmp_path)


def test_imagefolder_missing(tmp_path):
    with pytest.raises(DataError, match="not found"):
        imagefolder.load(tmp_path / "nowhere")
    write_image(tmp_path / "train" / "a" / "1.png", (4, 4), (0, 0, 0))
    with pytest.raises(DataError, match=r"/test: folder not found"):
        imagefolder.load(tmp_path)
