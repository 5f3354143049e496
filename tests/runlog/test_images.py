"""Image sources: a log written by any loop finds its pixels (folder, array, list, function)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import relabscope as rs
from relabscope.runlog.images import (ArrayImages, FileListImages, FolderImages, FunctionImages, ImageSourceError,
                                    image_source, letterbox, storable_spec)
from relabscope.errors import RelabscopeError, RunDirError

N = 6


def _pixels(n: int = N, h: int = 8, w: int = 8) -> np.ndarray:
    """Distinct images: image i is filled with 10 * i plus a per-pixel ramp."""
    ramp = (np.arange(h * w * 3).reshape(h, w, 3) % 7).astype(np.uint8)
    return np.stack([ramp + np.uint8(10 * i) for i in range(n)])


def _folder(tmp_path, pixels):
    keys = []
    for i, img in enumerate(pixels):
        key = f"class{i % 2}/img{i}.png"
        (tmp_path / "imgs" / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "imgs" / key)
        keys.append(key)
    return tmp_path / "imgs", keys


def _log(tmp_path, keys, **create):
    samples = rs.SampleTable(key=keys, split=[0] * (len(keys) - 2) + [1, 1], given_label=[i % 2 for i in range(len(keys))])
    rng = np.random.default_rng(0)
    with rs.RunLogWriter.create(tmp_path / "run", samples, ["a", "b"], embed_dim=4, **create) as log:
        train, test = np.arange(len(keys) - 2), np.arange(len(keys) - 2, len(keys))
        log.log_batch(train, samples.given_label[train], rng.normal(size=(len(train), 2)), rng.normal(size=(len(train), 4)))
        log.log_batch(test, samples.given_label[test], rng.normal(size=(2, 2)), rng.normal(size=(2, 4)), phase="test")
        log.end_epoch()
    return tmp_path / "run"


def test_folder_source_reads_keys_as_relative_paths(tmp_path):
    pixels = _pixels()
    root, keys = _folder(tmp_path, pixels)
    source = FolderImages(root)
    got = source.load(np.array([3, 0]), [keys[3], keys[0]])
    np.testing.assert_array_equal(got, pixels[[3, 0]])
    assert source.spec() == f"folder:{root.resolve()}"
    with pytest.raises(ImageSourceError, match="leaves the image folder"):
        source.load(np.array([0]), ["../../etc/passwd"])
    with pytest.raises(ImageSourceError, match="image not found"):
        source.load(np.array([0]), ["class0/missing.png"])


def test_array_sources_grey_and_npz(tmp_path):
    grey = _pixels()[..., 0]
    np.save(tmp_path / "grey.npy", grey)
    got = ArrayImages(tmp_path / "grey.npy").load(np.array([5, 1, 5]), [""] * 3)
    assert got.shape == (3, 8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(got[..., channel], grey[[5, 1, 5]])
    np.savez(tmp_path / "colour.npz", images=_pixels())
    np.testing.assert_array_equal(ArrayImages(tmp_path / "colour.npz").load(np.array([2]), [""]), _pixels()[[2]])
    with pytest.raises(ImageSourceError, match=r"no image for sample 6 \(it holds 6\)"):
        ArrayImages(tmp_path / "grey.npy").load(np.array([6]), [""])
    np.save(tmp_path / "float.npy", grey.astype(np.float32))
    with pytest.raises(ImageSourceError, match="float.npy: images must be uint8"):
        ArrayImages(tmp_path / "float.npy")
    np.savez(tmp_path / "other.npz", pixels=grey)
    with pytest.raises(ImageSourceError, match="no 'images' array"):
        ArrayImages(tmp_path / "other.npz")


def test_file_list_relative_to_its_folder(tmp_path):
    pixels = _pixels()
    root, keys = _folder(tmp_path, pixels)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(f"imgs/{k}" for k in keys) + "\n")
    source = FileListImages(listing)
    np.testing.assert_array_equal(source.load(np.array([4, 2]), ["x", "y"]), pixels[[4, 2]])
    assert source.spec() == f"files:{listing.resolve()}"
    with pytest.raises(ImageSourceError, match="no image for sample 9"):
        source.load(np.array([9]), ["x"])
    from_list = FileListImages([root / k for k in keys])
    assert from_list.spec() is None  # a Python list cannot be stored in a log
    np.testing.assert_array_equal(from_list.load(np.array([1]), ["x"]), pixels[[1]])


def test_sizes_are_letterboxed_not_stretched():
    wide = np.full((10, 20, 3), 200, np.uint8)
    boxed = letterbox(wide, 8)
    assert boxed.shape == (8, 8, 3)
    assert (boxed[0] == 0).all() and (boxed[-1] == 0).all()  # black bars above and below
    assert (boxed[3:5] == 200).all()  # the image, whole width, in the middle
    got = FunctionImages(lambda ids, keys: [wide, wide[:5, :5]]).load(np.array([0, 1]), ["a", "b"])
    assert got.shape == (2, 20, 20, 3)  # different shapes and no size: the largest side


def test_spec_parsing_and_one_line_errors(tmp_path):
    np.save(tmp_path / "a.npy", _pixels())
    (tmp_path / "d").mkdir()
    assert isinstance(image_source(tmp_path / "a.npy"), ArrayImages)
    assert isinstance(image_source(f"array:{tmp_path / 'a.npy'}"), ArrayImages)
    assert isinstance(image_source(str(tmp_path / "d")), FolderImages)
    assert isinstance(image_source(lambda ids, keys: []), FunctionImages)
    for bad, message in [(tmp_path / "nope", "no such image folder or file"),
                         (f"folder:{tmp_path / 'nope'}", "image folder not found"),
                         (tmp_path / "a.npy.bak", "no such image folder or file"),
                         ("", "an empty source"), ("folder:", "names no folder")]:
        with pytest.raises(ImageSourceError, match=message) as info:
            image_source(bad)
        assert "\n" not in str(info.value)
    (tmp_path / "x.bin").write_bytes(b"0")
    with pytest.raises(ImageSourceError, match="not an image source"):
        image_source(tmp_path / "x.bin")
    with pytest.raises(ImageSourceError, match="cannot be stored in a run log"):
        storable_spec(lambda ids, keys: [])
    assert issubclass(ImageSourceError, RelabscopeError)


def test_a_log_records_its_folder_and_run_images_reads_it(tmp_path):
    pixels = _pixels()
    root, keys = _folder(tmp_path, pixels)
    with rs.open_run(_log(tmp_path, keys, images=root)) as run:
        assert run.has_images and run.image_source == f"folder:{root.resolve()}"
        np.testing.assert_array_equal(run.images([5, 0]), pixels[[5, 0]])  # a test sample too
        assert run.images([1], size=16).shape == (1, 16, 16, 3)
        with pytest.raises(ValueError, match="out of range"):
            run.images([N])


def test_open_run_images_override_and_a_log_without_images(tmp_path):
    pixels = _pixels()
    path = _log(tmp_path, [f"s{i}" for i in range(N)])
    with rs.open_run(path) as run:
        assert not run.has_images and run.image_source is None
        with pytest.raises(RunDirError, match="no image source"):
            run.images([0])
    asked = []

    def fetch(ids, keys):
        asked.append((ids.tolist(), keys))
        return pixels[ids]

    with rs.open_run(path, images=fetch) as run:
        assert run.has_images
        np.testing.assert_array_equal(run.images([2, 3]), pixels[[2, 3]])
        assert asked == [([2, 3], ["s2", "s3"])]


def test_a_moved_folder_is_one_line(tmp_path):
    root, keys = _folder(tmp_path, _pixels())
    path = _log(tmp_path, keys, images=root)
    root.rename(tmp_path / "moved")
    with rs.open_run(path) as run:
        assert run.has_images  # recorded; finding out it moved costs a look on the first request
        with pytest.raises(RunDirError, match="recorded images are gone"):
            run.images([0])
    with rs.open_run(path, images=tmp_path / "moved") as run:  # pointing at the new place fixes it
        assert run.images([0]).shape == (1, 8, 8, 3)


def test_an_unstorable_source_leaves_no_log(tmp_path):
    with pytest.raises(ImageSourceError):
        _log(tmp_path, [f"s{i}" for i in range(N)], images=lambda ids, keys: [])
    assert not (tmp_path / "run" / "run.h5").exists()
    assert not (tmp_path / "run" / "run.h5.partial").exists()
