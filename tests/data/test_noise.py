"""Injected label noise and the two published noise-file formats."""

from __future__ import annotations

import numpy as np
import pytest

from relabscope.data.noise import inject_noise, normalised_stem, read_noise_file
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
