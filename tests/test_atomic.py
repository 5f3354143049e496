"""relabscope.atomic.atomic_write: whole-file replacement."""

from __future__ import annotations

import threading

import pytest

from relabscope.atomic import atomic_write


def test_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.toml"
    path.write_bytes(b"old")
    with atomic_write(path) as fh:
        fh.write(b"new")
        assert path.read_bytes() == b"old"  # nothing visible until the block ends
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.toml"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "f.toml"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.toml"]


def test_concurrent_writers_of_one_file_all_succeed(tmp_path):
    """Two sweep processes write sweep.toml at the same moment: a shared temporary name
    made the second rename fail; unique names let the last writer win."""
    path = tmp_path / "sweep.toml"
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            start.wait()
            for _ in range(50):
                with atomic_write(path) as fh:
                    fh.write(f"writer {i}\n".encode() * 100)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = set(path.read_text().splitlines())
    assert len(lines) == 1 and lines.pop().startswith("writer ")  # one writer's whole file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_new_file_has_the_mode_open_would_give_it(tmp_path, umask):
    """mkstemp's 0600 would hide a shared run directory's tables from the group."""
    import os

    before = os.umask(umask)
    try:
        with atomic_write(tmp_path / "table.csv") as fh:
            fh.write(b"a,b\n")
        with open(tmp_path / "plain.csv", "wb") as fh:
            fh.write(b"a,b\n")
    finally:
        os.umask(before)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == (tmp_path / "plain.csv").stat().st_mode & 0o777
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o666 & ~umask
