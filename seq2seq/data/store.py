"""The prepared corpus on disk: flat, memory-mapped arrays written once and shared by every reader.

An entry is a folder under ``$SEQ2SEQ_CACHE_DIR/corpus/`` named by the cache key
(:func:`seq2seq.data.sources.cache_key`)::

    src_ids.bin  tgt_ids.bin       int32: every training sentence's model ids, one after another
    src_offsets.bin  tgt_offsets.bin  int64: sentence i is ids[offsets[i]:offsets[i + 1]]
    decisions.bin                  uint8: the filter's decision for every pair read (corpora.KEPT ...)
    small.pkl                      the vocabulary and the validation split (ids and texts)
    manifest.json                  written last: sizes and sha256 of the files above, the corpus's
                                   content hash, the splits' fingerprints, the preparation's log lines

A builder writes into a temporary folder beside the entry and renames it into place only when
the manifest is written, under an ``fcntl`` lock on ``<key>.lock``, so a killed write leaves at
most a temporary folder (removed by the next builder), and two preparers of one corpus end with
one good entry. A reader checks sizes and checksums before it maps anything. Pages of a mapped
file belong to the page cache: every process that maps an entry (every rank, every sweep job)
shares one copy, and the kernel can drop them under memory pressure.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pickle
import shutil
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VERSION = 1
MANIFEST = "manifest.json"
SMALL = "small.pkl"
DTYPES = {"src_ids": "int32", "tgt_ids": "int32", "src_offsets": "int64", "tgt_offsets": "int64", "decisions": "uint8"}
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no room left, a quota, a file-size limit
FAULT_ENV = "SEQ2SEQ_CACHE_FAULT"  # tests: kill | int | full, acted on after the first chunk is written


class MappedIds(Sequence[list[int]]):
    """One side's sentences, read from the mapped arrays: ``ids[i]`` is a list of model ids."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray):
        self.ids, self.offsets = ids, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.ids[self.offsets[i] : self.offsets[i + 1]].tolist()

    def lengths(self) -> np.ndarray:
        """Each sentence's length in ids: 2 bytes a sentence (uint16) where every length is under 32,768
        (room left for a + 1 without overflow), else 4."""
        lengths = np.diff(self.offsets)
        return lengths.astype(np.uint16 if len(lengths) == 0 or lengths.max() < 1 << 15 else np.int32)


@dataclass
class MappedSplit:
    """The training split as the trainer reads it: lengths in memory, ids paged in from the cache."""

    src_ids: MappedIds
    tgt_ids: MappedIds
    fingerprint: dict = field(default_factory=dict)
    src_texts: list[str] = field(default_factory=list)  # training needs no texts
    tgt_texts: list[str] = field(default_factory=list)

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        return self.src_ids.lengths(), self.tgt_ids.lengths()


@dataclass
class Entry:
    manifest: dict
    small: dict
    train: MappedSplit


# -- writing --------------------------------------------------------------------------------------


class Writer:
    """Appends arrays to the files of an entry being built, hashing as it goes."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, tuple[object, hashlib._Hash, list[int]]] = {}
        self.chunks = 0

    def append(self, name: str, values: np.ndarray) -> None:
        if name not in self.files:
            self.files[name] = (open(self.folder / f"{name}.bin", "wb"), hashlib.sha256(), [0])
        handle, digest, size = self.files[name]
        data = np.ascontiguousarray(values, dtype=DTYPES[name]).tobytes()
        handle.write(data)  # type: ignore[attr-defined]
        digest.update(data)
        size[0] += len(data)

    def chunk_done(self) -> None:
        """Called after each chunk: where tests make a write die (``SEQ2SEQ_CACHE_FAULT``)."""
        self.chunks += 1
        fault = os.environ.get(FAULT_ENV)
        if fault and self.chunks == 1:
            for handle, _, _ in self.files.values():
                handle.flush()  # type: ignore[attr-defined]
            if fault == "full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if fault == "int":  # Ctrl-C at a terminal: the whole process group gets SIGINT
                os.killpg(os.getpgid(0), signal.SIGINT)
            if fault == "kill":  # kill -9 of the job: the preparer and this child at once
                os.killpg(os.getpgid(0), signal.SIGKILL)

    def finish(self, small: dict, manifest: dict) -> None:
        """Close the arrays, write the small file and then the manifest that makes the entry whole."""
        (self.folder / SMALL).write_bytes(pickle.dumps(small))
        arrays = {}
        for name, (handle, digest, size) in self.files.items():
            handle.flush()  # type: ignore[attr-defined]
            os.fsync(handle.fileno())  # type: ignore[attr-defined]
            handle.close()  # type: ignore[attr-defined]
            arrays[name] = {"bytes": size[0], "sha256": digest.hexdigest()}
        arrays[SMALL] = {"bytes": (self.folder / SMALL).stat().st_size, "sha256": _file_hash(self.folder / SMALL)}
        (self.folder / MANIFEST).write_text(json.dumps({**manifest, "version": VERSION, "arrays": arrays}, indent=1))

    def close(self) -> None:
        for handle, _, _ in self.files.values():
            handle.close()  # type: ignore[attr-defined]


def temporary(entry: Path) -> tuple[Path, int]:
    """A fresh folder to build ``entry`` in, and how many folders killed builders left (now removed)."""
    stale = list(entry.parent.glob(f".tmp-{entry.name}-*")) + list(entry.parent.glob(f".old-{entry.name}-*"))
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)  # the lock is held: no builder is alive in there
    tmp = entry.parent / f".tmp-{entry.name}-{os.getpid()}"
    tmp.mkdir(parents=True)
    return tmp, len(stale)


def publish(tmp: Path, entry: Path) -> None:
    """Move a finished build into place (replacing a damaged or outdated entry) in one rename."""
    old = entry.parent / f".old-{entry.name}-{os.getpid()}"
    if entry.exists():
        os.rename(entry, old)  # readers that mapped it keep their pages: the files live on until unmapped
    os.rename(tmp, entry)
    shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):
        fd = os.open(entry.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


@contextlib.contextmanager
def locked(entry: Path) -> Iterator[None]:
    """Hold the entry's lock (one builder at a time; readers wait for a build to finish)."""
    with open(entry.parent / f"{entry.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- reading --------------------------------------------------------------------------------------


def read_manifest(entry: Path) -> dict | None:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("version") == VERSION else None


def damage(entry: Path, manifest: dict) -> str | None:
    """What is wrong with an entry's files (a size or checksum the manifest does not list), or None."""
    for name, expected in manifest["arrays"].items():
        path = entry / (name if name == SMALL else f"{name}.bin")
        size = path.stat().st_size if path.is_file() else None
        if size != expected["bytes"]:
            return f"{path.name} has {size} bytes, the manifest says {expected['bytes']}"
        if _file_hash(path) != expected["sha256"]:
            return f"{path.name} does not match its checksum"
    return None


def open_entry(entry: Path, manifest: dict) -> Entry:
    """Map a checked entry's arrays (nothing is read until a batch asks for it)."""
    arrays = {name: _map(entry / f"{name}.bin", DTYPES[name]) for name in ("src_ids", "tgt_ids")}
    offsets = {name: _map(entry / f"{name}.bin", DTYPES[name]) for name in ("src_offsets", "tgt_offsets")}
    small = pickle.loads((entry / SMALL).read_bytes())
    train = MappedSplit(
        MappedIds(arrays["src_ids"], offsets["src_offsets"]),
        MappedIds(arrays["tgt_ids"], offsets["tgt_offsets"]),
        manifest["train_fingerprint"],
    )
    return Entry(manifest, small, train)


def _map(path: Path, dtype: str) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 23):
            digest.update(chunk)
    return digest.hexdigest()
