"""Building a run log's layout in a new file, and rebuilding one from an older log.

Every dataset is created here, before SWMR starts (SWMR forbids new datasets and
attributes afterwards). What keeps a flipped byte from becoming a wrong number:

- every chunked dataset carries HDF5's fletcher32 filter (a checksum per chunk, which SWMR
  allows: measured with HDF5 2.0), so reading a damaged chunk fails instead of returning it;
- strings are fixed-length (:func:`fixed_text`: never HDF5's variable-length strings, whose
  global heap has no checksum), the lists of them chunked with fletcher32 too, and the
  ``meta`` attribute ``digests`` holds the SHA-256 of each string dataset
  (``schema.text_digest``), which the reader checks (it also covers the config, one
  contiguous string, and logs written with variable-length strings);
- HDF5's own metadata (superblock, object headers, chunk indexes) is checksummed in the
  file format relabscope writes (``libver="latest"``).

:func:`rebuild` is how a run resumes: the kept epochs of the old log are copied into a new
file, which then replaces the old one (``RunLogWriter.resume``). The old file is only
read, so readers that hold it open keep a consistent log and never block the resume, a
log whose kept rows are damaged is refused before anything changes, and the copy is the
integrity check.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

from relabscope.runlog import schema

#: ``meta`` attributes the layout computes itself (never copied from an older log)
_DERIVED = {"num_classes", "embed_dim", "num_samples", "fields", "skipped_count", "guards", "digests"}


def build(
    f: h5py.File,
    samples: schema.SampleTable,
    class_names: list[str],
    embed_dim: int,
    fields: dict[str, tuple[int, ...]],
    has_centers: bool,
    config: dict[str, Any],
    metadata: dict[str, Any],
    skipped: list[str],
    guards: list[str],
) -> None:
    """Create every group, dataset and attribute of an empty log (no epoch yet)."""
    n, k, d = len(samples), len(class_names), embed_dim
    config_json = json.dumps(config, default=str)
    f.attrs["format"] = fixed_text(schema.FORMAT)
    f.attrs["schema_version"] = schema.SCHEMA_VERSION
    meta = f.create_group("meta")
    digests = {"meta/config": [config_json], "meta/class_names": class_names, "meta/skipped": skipped,
               "samples/key": list(samples.key)}
    derived = dict(num_classes=k, embed_dim=d, num_samples=n, fields=json.dumps(fields), skipped_count=len(skipped),
                   guards=json.dumps(guards),
                   digests=json.dumps({name: schema.text_digest(v) for name, v in digests.items()}))
    for key, value in {**{k_: v for k_, v in metadata.items() if k_ not in _DERIVED}, **derived}.items():
        meta.attrs[key] = fixed_text(value) if isinstance(value, (str, bytes)) else value
    meta.create_dataset("config", data=fixed_text(config_json))
    _texts(meta, "class_names", class_names)
    _texts(meta, "skipped", skipped)
    s = f.create_group("samples")
    _texts(s, "key", list(samples.key))
    columns: dict[str, np.ndarray] = {
        "split": samples.split, "given_label": samples.given_label, "clean_label": np.asarray(samples.clean_label),
        **{f"extra/{name}": np.asarray(col) for name, col in samples.extras.items()}}
    for name, col in columns.items():
        _checksummed(s, name, col)
    for name, (row, dtype) in schema.per_epoch_datasets(n, k, d, fields, has_centers, len(guards)).items():
        _growing(f, name, row, dtype, schema.chunk_shape(row, np.dtype(dtype).itemsize))
    _growing(f, "epochs/done", (), "<f8", (1024,))
    _growing(f, "relabels", (), schema.RELABEL_DTYPE, (4096,))
    _growing(f, "embeddings/epoch", (), "<i4", (256,))
    _growing(f, "embeddings/data", (n, d), "<f2", schema.chunk_shape((n, d), 2))
    f.create_dataset("status", data=np.array([schema.STATUS["running"]], dtype=np.int8))


def fixed_text(value: str | bytes) -> np.ndarray:
    """A string as a fixed-length UTF-8 HDF5 string. Not h5py's default, the variable-length
    string: those live in HDF5's global heap, which has no checksum, and one flipped byte
    of a heap object's size made HDF5 loop inside a read, with the GIL held, for good
    (measured: an hour at full CPU opening the log). Fixed-length strings sit in the
    checksummed object header (attributes) or in chunks fletcher32 covers."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    return np.array(raw, dtype=h5py.string_dtype("utf-8", max(1, len(raw))))


def _texts(group: h5py.Group, name: str, values: list[str]) -> None:
    """A list of strings as a fixed-length UTF-8 string dataset, checksummed per chunk."""
    raw = [v.encode("utf-8", "surrogateescape") for v in values]
    width = max([1, *map(len, raw)])
    _checksummed(group, name, np.array(raw, dtype=h5py.string_dtype("utf-8", width)))


def _checksummed(group: h5py.Group, name: str, data: np.ndarray) -> None:
    """A dataset written once, chunked with fletcher32 (HDF5 cannot chunk an empty one)."""
    group.create_dataset(name, data=data, chunks=True if data.size else None, fletcher32=bool(data.size))


def _growing(f: h5py.File, name: str, row: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]) -> None:
    """A dataset of no rows yet that grows along its first axis, checksummed per chunk."""
    f.create_dataset(name, shape=(0, *row), maxshape=(None, *row), dtype=dtype, chunks=chunks,
                     fletcher32=True, fillvalue=fill_value(dtype))


def fill_value(dtype: Any) -> Any:
    """What a row nobody wrote holds: NaN for floats, -1 for integers (compound: none)."""
    kind = np.dtype(dtype).kind
    return np.nan if kind == "f" else -1 if kind in "iu" else None


def rebuild(old: h5py.File, new: h5py.File, keep: int, config: dict[str, Any] | None) -> None:
    """Build ``new`` as ``old``'s layout holding its first ``keep`` epochs (their rows, their
    relabel events and kept embeddings), status "running", and ``config`` if given.

    Reads every row it copies, so a damaged one raises here (an HDF5 error) and ``new`` is
    then to be thrown away.

    Raises:
        ValueError: ``old`` holds fewer than ``keep`` committed epochs.
    """
    committed = old["epochs/done"].shape[0]
    if keep > committed:
        raise ValueError(f"log holds {committed} epochs, cannot keep {keep}")
    meta = old["meta"].attrs
    fields = {name: tuple(shape) for name, shape in json.loads(meta["fields"]).items()}
    guards = json.loads(meta.get("guards", "[]"))
    build(new, _samples(old), texts(old, "meta/class_names"), int(meta["embed_dim"]), fields,
          "center" in old["epochs"], config if config is not None else json.loads(texts(old, "meta/config")[0]),
          {key: meta[key] for key in meta}, texts(old, "meta/skipped"), guards)
    for name in _per_epoch_names(new):
        src, dst = old.get(name), new[name]
        dst.resize((keep, *dst.shape[1:]))
        for e in range(keep):
            dst[e] = src[e] if src is not None and src.shape[0] > e else fill_value(dst.dtype)
    events = int(old["epochs/relabel_end"][keep - 1]) if keep else 0
    _copy_rows(old["relabels"], new["relabels"], events)
    which = old["embeddings/epoch"][:]
    kept = np.flatnonzero(which < keep)
    new["embeddings/epoch"].resize((len(kept),))
    new["embeddings/epoch"][:] = which[kept]
    data = new["embeddings/data"]
    data.resize((len(kept), *data.shape[1:]))
    for row, m in enumerate(kept):
        data[row] = old["embeddings/data"][m]


def copy_bytes(old: h5py.File, keep: int) -> int:
    """About how many bytes :func:`rebuild` writes for ``keep`` epochs of ``old``: the
    samples and the kept rows, raw (HDF5's own structures come on top)."""
    total = layout_bytes(_samples(old))
    for name in _per_epoch_names(old):
        ds = old[name]
        total += int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize * keep
    which = old["embeddings/epoch"][:]
    data = old["embeddings/data"]
    total += int((which < keep).sum()) * int(np.prod(data.shape[1:], dtype=np.int64)) * data.dtype.itemsize
    events = int(old["epochs/relabel_end"][keep - 1]) if keep else 0
    return total + events * schema.RELABEL_DTYPE.itemsize


def layout_bytes(samples: schema.SampleTable) -> int:
    """About how many bytes :func:`build` writes: the samples table, raw."""
    columns = [samples.split, samples.given_label, samples.clean_label, *samples.extras.values()]
    return sum(len(k.encode()) + 16 for k in samples.key) + sum(np.asarray(c).nbytes for c in columns)


def _per_epoch_names(f: h5py.File) -> list[str]:
    """Every dataset under ``epochs/`` (``done`` included), with its full name."""
    names: list[str] = []
    f["epochs"].visititems(lambda name, obj: names.append("epochs/" + name) if isinstance(obj, h5py.Dataset)
                           else None)
    return names


def _samples(old: h5py.File) -> schema.SampleTable:
    s = old["samples"]
    extras = {name: s["extra"][name][:] for name in s.get("extra", {})}
    return schema.SampleTable(key=texts(old, "samples/key"), split=s["split"][:],
                              given_label=s["given_label"][:], clean_label=s["clean_label"][:], extras=extras)


def _copy_rows(src: h5py.Dataset, dst: h5py.Dataset, rows: int, block: int = 1 << 16) -> None:
    dst.resize((rows, *dst.shape[1:]))
    for start in range(0, rows, block):
        dst[start:start + block] = src[start:min(rows, start + block)]


def texts(f: h5py.File, name: str) -> list[str]:
    """A string dataset of a log, checked against its digest (see the module's docstring).

    Raises:
        ValueError: the strings do not match their digest.
    """
    values = [schema.text(v) for v in np.atleast_1d(f[name][()])]
    if schema.digest_mismatch(f["meta"].attrs.get("digests", ""), name, values):
        raise ValueError(f"{name} does not match its checksum")
    return values
