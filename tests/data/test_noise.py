"""Injected label noise and the two published noise-file formats."""

from __future__ import annotations

import numpy as np
import pytest

from relabscope.data.noise import (flip_matrix, inject_noise, inject_noise_matrix, matrix_digest, normalised_stem,
                                   read_noise_file, read_noise_matrix)
from relabscope.errors import DataError


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.3])
def test_inject_noise_rate_and_other_class(rate):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 7, size=20_000)
    noisy = inject_noise(labels, rate, 7, seed=1)
    flipped = noisy != labels
    assert abs(flipped.mean() - rate) < 0.01
    assert noisy.dtype == np.int64 and noisy.min() >= 0 and noisy.max() <= 6
    # a flip never lands on the same class (that is what `!=` counted) and reaches every other
    for y in range(7):
        targets = set(noisy[flipped & (labels == y)].tolist())
        assert targets == set(range(7)) - {y}


def test_inject_noise_deterministic_and_nested():
    labels = np.arange(1000) % 8
    a = inject_noise(labels, 0.2, 8, seed=3)
    assert np.array_equal(a, inject_noise(labels, 0.2, 8, seed=3))
    assert not np.array_equal(a, inject_noise(labels, 0.2, 8, seed=4))
    low = inject_noise(labels, 0.1, 8, seed=3) != labels
    high = a != labels
    assert np.all(high[low])  # the samples flipped at 10% are flipped at 20% too
    assert np.array_equal(labels, np.arange(1000) % 8)  # input untouched


def test_inject_noise_rate_zero_and_bad_rates():
    labels = np.arange(50) % 7
    assert np.array_equal(inject_noise(labels, 0.0, 7, seed=0), labels)
    for rate in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            inject_noise(labels, rate, 7, seed=0)
    with pytest.raises(ValueError):
        inject_noise(np.array([0, 7]), 0.1, 7, seed=0)


# RAF-DB-style keys, as the rafdb loader makes them
KEYS = [f"Image/aligned/train_{i:05d}_aligned.jpg" for i in range(1, 11)]
LABELS = [0, 3, 6, 2, 4, 3, 1, 5, 3, 6]  # 0-based


def test_read_raf_noise01_one_based(tmp_path):
    path = tmp_path / "noise01.txt"
    path.write_text("".join(f"train_{i + 1:05d}.jpg {y + 1}\n" for i, y in enumerate(LABELS)))
    got = read_noise_file(path, KEYS, 7)
    assert got.dtype == np.int64 and got.tolist() == LABELS
    # the file's order does not matter; keys decide the order of the result
    lines = path.read_text().splitlines()
    path.write_text("\n".join(reversed(lines)) + "\n")
    assert read_noise_file(path, KEYS, 7).tolist() == LABELS


def test_read_scn_noise_train_zero_based(tmp_path):
    path = tmp_path / "0.1noise_train.txt"
    path.write_text("".join(f"train_{i + 1:05d}_aligned.jpg {y}\n" for i, y in enumerate(LABELS)))
    assert read_noise_file(path, KEYS, 7).tolist() == LABELS
    # exact keys are matched too, blank lines ignored
    path.write_text("\n".join(f"{k} {y}" for k, y in zip(KEYS, LABELS)) + "\n\n")
    assert read_noise_file(path, KEYS, 7).tolist() == LABELS


def test_read_noise_base_from_labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"train_{i + 1:05d}.jpg {y}\n" for i, y in enumerate(LABELS)))
    assert read_noise_file(path, KEYS, 7).tolist() == LABELS  # a 0 is present: 0-based
    one_based = [y + 1 for y in LABELS]  # a 7 is present: 1-based
    path.write_text("".join(f"train_{i + 1:05d}.jpg {y}\n" for i, y in enumerate(one_based)))
    assert read_noise_file(path, KEYS, 7).tolist() == LABELS
    mid = [3, 2, 4, 1, 5, 3, 2, 6, 1, 4]  # neither 0 nor 7: ask
    path.write_text("".join(f"train_{i + 1:05d}.jpg {y}\n" for i, y in enumerate(mid)))
    with pytest.raises(DataError, match="labels.txt: cannot tell whether labels are 0- or 1-based"):
        read_noise_file(path, KEYS, 7)
    assert read_noise_file(path, KEYS, 7, base=1).tolist() == [y - 1 for y in mid]
    assert read_noise_file(path, KEYS, 7, base=0).tolist() == mid


def test_read_noise_errors(tmp_path):
    path = tmp_path / "noise02.txt"
    with pytest.raises(DataError, match="noise02.txt: noise file not found"):
        read_noise_file(path, KEYS, 7)
    lines = [f"train_{i + 1:05d}.jpg {y + 1}" for i, y in enumerate(LABELS)]
    path.write_text("\n".join(lines[:7]) + "\n")
    with pytest.raises(DataError) as err:
        read_noise_file(path, KEYS, 7)
    message = "noise02.txt: no label for Image/aligned/train_00008_aligned.jpg (3 of 10"
    assert message in str(err.value)
    path.write_text("\n".join(lines + ["test_0001.jpg 3"]) + "\n")
    with pytest.raises(DataError, match=r"noise02\.txt:11: test_0001\.jpg is not a sample"):
        read_noise_file(path, KEYS, 7)
    path.write_text("\n".join(lines[:4] + ["train_00005.jpg 8"] + lines[5:]) + "\n")
    with pytest.raises(DataError, match=r"noise02\.txt:5: label 8 is out of range 1\.\.7"):
        read_noise_file(path, KEYS, 7)
    path.write_text("\n".join(lines[:4] + ["train_00005.jpg"] + lines[5:]) + "\n")
    with pytest.raises(DataError, match=r"noise02\.txt:5: expected '<path> <label>'"):
        read_noise_file(path, KEYS, 7)
    path.write_text("\n".join(lines + [lines[2]]) + "\n")
    twice = r"noise02\.txt:11: .*train_00003_aligned\.jpg is given a label twice \(also line 3\)"
    with pytest.raises(DataError, match=twice):
        read_noise_file(path, KEYS, 7)
    zero_based = tmp_path / "0.2noise_train.txt"
    lines = [f"train_{i + 1:05d}.jpg {y}" for i, y in enumerate(LABELS[:-1])]
    zero_based.write_text("\n".join(lines + ["train_00010.jpg 7"]) + "\n")
    with pytest.raises(DataError, match=r"0\.2noise_train\.txt:10: label 7 is out of range 0\.\.6"):
        read_noise_file(zero_based, KEYS, 7)


def test_stem_matching_needs_a_unique_stem(tmp_path):
    keys = ["a/x.jpg", "b/x.jpg", "b/y.jpg"]
    path = tmp_path / "0.1noise_train.txt"
    path.write_text("a/x.jpg 1\nb/x.jpg 2\ny.png 0\n")
    assert read_noise_file(path, keys, 3).tolist() == [1, 2, 0]
    path.write_text("x.jpg 1\nb/x.jpg 2\nb/y.jpg 0\n")
    with pytest.raises(DataError, match=r":1: x\.jpg matches several samples"):
        read_noise_file(path, keys, 3)
    assert normalised_stem("Image\\aligned\\test_0001_aligned.jpg") == "test_0001"


# ---------------------------------------------------------------------- class-dependent noise
NAMES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
PAIRS = [("fear", "surprise"), ("disgust", "anger"), ("sadness", "neutral")]


def paired_matrix(rate: float) -> np.ndarray:
    """Each class of a pair becomes its partner with probability ``rate``; happiness stays."""
    m = np.eye(len(NAMES))
    for a, b in PAIRS:
        for i, j in ((NAMES.index(a), NAMES.index(b)), (NAMES.index(b), NAMES.index(a))):
            m[i, i], m[i, j] = 1 - rate, rate
    return m


def test_realised_flips_match_the_matrix_within_sampling_error():
    """20,000 labels through a class-dependent matrix with a spread-out row: every cell's
    realised fraction lies within 4.5 binomial standard deviations of the asked one (a
    family-wise bound: 49 cells at 4.5 sigma fail by chance with probability < 4e-4), and
    the cells asked 0 are exactly 0 (never drawn)."""
    asked = paired_matrix(0.3)
    asked[3] = [0.05, 0.1, 0.05, 0.6, 0.1, 0.05, 0.05]  # happiness: every class reachable
    labels = np.arange(20_000) % 7
    noisy = inject_noise_matrix(labels, asked, seed=3)
    realised = flip_matrix(labels, noisy, 7)
    per_row = np.bincount(labels, minlength=7)[:, None]
    sigma = np.sqrt(asked * (1 - asked) / per_row)
    assert np.all(np.abs(realised - asked) <= 4.5 * sigma + 1e-12)
    assert np.all(realised[asked == 0] == 0)
    # the same seed draws the same labels; another seed others
    assert np.array_equal(noisy, inject_noise_matrix(labels, asked, seed=3))
    assert not np.array_equal(noisy, inject_noise_matrix(labels, asked, seed=4))


def test_identity_and_rounded_rows_never_draw_a_zero_entry():
    labels = np.arange(700) % 7
    assert np.array_equal(inject_noise_matrix(labels, np.eye(7), seed=0), labels)
    # a row whose CDF ends a hair below 1 (allowed by the tolerance) and whose last class has 0
    m = np.eye(3)
    m[0] = [0.5, 0.5 - 1e-7, 0.0]
    drawn = inject_noise_matrix(np.zeros(50_000, np.int64), m, seed=1)
    assert set(np.unique(drawn).tolist()) == {0, 1}


def test_read_noise_matrix_csv_npy_and_named(tmp_path):
    asked = paired_matrix(0.2)
    plain = tmp_path / "m.csv"
    plain.write_text("# rows: given label, columns: noisy label\n"
                     + "\n".join(",".join(f"{v:g}" for v in row) for row in asked) + "\n")
    assert np.array_equal(read_noise_matrix(plain, NAMES), asked)
    npy = tmp_path / "m.npy"
    np.save(npy, asked)
    assert np.array_equal(read_noise_matrix(npy, NAMES), asked)
    # headed by names, rows and columns in another order, names in any case
    order = [6, 0, 3, 1, 5, 2, 4]
    named = tmp_path / "named.csv"
    lines = ["from \\ to," + ",".join(NAMES[j].upper() for j in order)]
    lines += [NAMES[i] + "," + ",".join(f"{asked[i, j]:g}" for j in order) for i in reversed(order)]
    named.write_text("\n".join(lines) + "\n")
    assert np.array_equal(read_noise_matrix(named, NAMES), asked)


@pytest.mark.parametrize("text, message", [
    ("1,0\n0,1\n", r"m\.csv: noise matrix is 2 x 2, but the data set has 3 classes \(a, b, c\)"),
    ("1,0,0\n0,1,0\n0,0.5,0.4\n", r"m\.csv: noise matrix row 'c' sums to 0\.9, not 1 \(within 1e-06\)"),
    ("1,0,0\n0.5,0.6,-0.1\n0,0,1\n", r"m\.csv: noise matrix entry \[b, c\] is -0\.1; entries must be finite"),
    ("1,0,0\n0,1,0\n0,x,1\n", r"m\.csv:3: 'x' is not a number"),
    ("1,0.x,0\n0,1,0\n0,0,1\n", r"m\.csv:1: '0\.x' is not a number"),  # a typo is no header
    ("1,0,0\n0,1\n0,0,1\n", r"m\.csv:2: expected 3 values like the first row, found 2"),
    (",a,b,z\na,1,0,0\n", r"m\.csv:1: unknown class 'z'; the data set's classes: a, b, c"),
    (",a,b,c\na,1,0,0\nb,0,1,0\n", r"m\.csv: noise matrix has no row for 'c' \(1 of 3 rows missing\)"),
    (",a,b,c\na,1,0,0\na,1,0,0\nc,0,0,1\n", r"m\.csv:3: row 'a' is given twice"),
    ("", r"m\.csv: noise matrix file is empty"),
])
def test_noise_matrix_errors_are_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_noise_matrix(path, ["a", "b", "c"])
    assert "\n" not in str(err.value)


def test_noise_matrix_missing_and_npy_errors(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npy: noise matrix not found"):
        read_noise_matrix(tmp_path / "nope.npy", ["a", "b"])
    bad = tmp_path / "bad.npy"
    bad.write_text("not numpy")
    with pytest.raises(DataError, match=r"bad\.npy: not a readable \.npy array"):
        read_noise_matrix(bad, ["a", "b"])
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones(3) / 3)
    with pytest.raises(DataError, match=r"wrong\.npy: noise matrix is 3, but the data set has 2 classes"):
        read_noise_matrix(wrong, ["a", "b"])


def test_noise_matrix_digest_tells_matrices_apart():
    a, b = paired_matrix(0.2), paired_matrix(0.3)
    assert matrix_digest(a) == matrix_digest(a.copy()) != matrix_digest(b)
    assert len(matrix_digest(a)) == 64
