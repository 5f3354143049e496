"""Direct chunk reads: the numpy fletcher32 equals HDF5's bit for bit, rows read straight
from chunks equal h5py's, and a damaged chunk is an error, never a number."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

from relabscope.runlog import chunks, schema


def _stored(tmp_path, data: np.ndarray, chunk_shape: tuple[int, ...]) -> list[tuple[bytes, int]]:
    """Each chunk's payload and the fletcher32 HDF5 stored after it."""
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", data=data, chunks=chunk_shape, fletcher32=True)
        out = []
        for index in np.ndindex(*(-(-s // c) for s, c in zip(data.shape, chunk_shape))):
            _, raw = ds.id.read_direct_chunk(tuple(i * c for i, c in zip(index, chunk_shape)))
            out.append((raw[:-4], int.from_bytes(raw[-4:], "little")))
    return out


@pytest.mark.parametrize("length", [1, 2, 3, 718, 719, 720, 721, 722, 7201, 10_000, 65_537])
def test_fletcher32_equals_hdf5_for_any_length(tmp_path, length):
    # lengths around one block (360 words = 720 bytes), odd byte counts, and sums that wrap
    rng = np.random.default_rng(length)
    data = np.concatenate([rng.integers(0, 256, (2, length), dtype=np.uint8),
                           np.full((1, length), 255, np.uint8)])
    stored = _stored(tmp_path, data, (1, length))
    got = chunks.fletcher32([payload for payload, _ in stored])
    assert got.tolist() == [checksum for _, checksum in stored]


@pytest.fixture
def log_like(tmp_path):
    """A per-epoch dataset laid out as a run log's: one epoch per chunk along the first
    axis, 70-row chunks over 250 samples (a padded last chunk), whole trailing rows."""
    rng = np.random.default_rng(0)
    data = rng.random((5, 250, 3), dtype=np.float32)
    path = tmp_path / "log.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("epochs/prob", data=data, chunks=(1, 70, 3), fletcher32=True, maxshape=(None, 250, 3))
    return path, data


def test_rows_read_from_chunks_equal_h5py(log_like):
    path, data = log_like
    with h5py.File(path, "r") as f:
        ds = f["epochs/prob"]
        for start, stop in [(0, 5), (1, 3), (4, 5)]:
            fast = chunks.read_epochs(ds, start, stop)
            assert fast is not None
            np.testing.assert_array_equal(fast, data[start:stop])
            np.testing.assert_array_equal(fast, ds[start:stop])


def test_a_flipped_byte_in_a_chunk_is_an_error(log_like):
    path, _ = log_like
    with h5py.File(path, "r") as f:
        offset = f["epochs/prob"].id.get_chunk_info_by_coord((2, 140, 0)).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 17)
        byte = fh.read(1)
        fh.seek(offset + 17)
        fh.write(bytes([byte[0] ^ 0x10]))
    with h5py.File(path, "r") as f:
        ds = f["epochs/prob"]
        with pytest.raises(OSError, match="epoch 2 at row 140"):
            chunks.read_epochs(ds, 0, 5)
        np.testing.assert_array_equal(chunks.read_epochs(ds, 0, 2), ds[0:2])  # the other epochs still read
        with pytest.raises(OSError):
            ds[2]  # HDF5's own filter agrees


def test_other_layouts_are_left_to_h5py(tmp_path):
    with h5py.File(tmp_path / "o.h5", "w") as f:
        plain = f.create_dataset("plain", data=np.zeros((3, 4)), chunks=(1, 4))
        two_epochs = f.create_dataset("two", data=np.zeros((4, 4)), chunks=(2, 4), fletcher32=True)
        assert chunks.read_epochs(plain, 0, 3) is None
        assert chunks.read_epochs(two_epochs, 0, 4) is None


def test_string_digests_of_the_first_schema_2_logs_still_check():
    values = ["a", "b/c.jpg", "é"]
    sha = hashlib.sha256()
    for value in values:
        data = value.encode()
        sha.update(len(data).to_bytes(8, "little"))
        sha.update(data)
    first = json.dumps({"samples/key": sha.hexdigest()})
    now = json.dumps({"samples/key": schema.text_digest(values)})
    assert not schema.digest_mismatch(first, "samples/key", values)
    assert not schema.digest_mismatch(now, "samples/key", values)
    assert schema.digest_mismatch(first, "samples/key", ["a", "b/c.jpg", "e"])
    assert schema.digest_mismatch(now, "samples/key", ["a", "b/c.jpg", "e"])
