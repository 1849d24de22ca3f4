"""Checkpoints: written atomically, read without running code.

A checkpoint is a dict of tensors and plain containers (the config as a dict, the SentencePiece
model as bytes), saved with ``torch.save`` to a temporary file that is fsynced and renamed over
the target, so a crash mid-write leaves the previous checkpoint intact. It is loaded with
``torch.load(weights_only=True)``, which refuses any pickled object that could run code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import CheckpointError
from seq2seq.training.faults import crash_point

FORMAT_VERSION = 1
REQUIRED = ("format_version", "config", "vocab", "model")


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Atomically write ``payload`` to ``path`` (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **payload}, handle)
            crash_point("checkpoint")  # tests: a crash before the rename must leave the previous checkpoint intact
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a failed write as a RuntimeError
        cause = _write_failure(error)
        if cause is None:
            raise  # not a write failure: a bug, with its traceback
        kept = "the previous one is kept" if path.exists() else "there was none before"
        raise CheckpointError(
            f"could not write checkpoint {path} ({_first_line(cause)}); {kept}. Free disk space or raise the "
            "quota or file-size limit (ulimit -f), then continue with train.resume=true"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def _write_failure(error: BaseException) -> BaseException | None:
    """The OSError behind a failed write (torch wraps it in RuntimeErrors), or None if it is not one."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error if "writ" in str(error).lower() else None


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete temporary files a killed process left behind in ``folder``; returns what was removed."""
    stale = sorted(Path(folder).glob(".*.pt.tmp*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely; any problem becomes a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass the file itself, e.g. {path / 'best.pt'}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint (not a torch.save archive)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message advises weights_only=False: it is not quoted
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
        raise CheckpointError(
            f"refusing to load {path}: it holds pickled objects other than tensors and plain containers"
            f"{f' ({found[1]})' if found else ''}, which could run code; seq2seq writes none in its checkpoints, "
            "so use one that seq2seq wrote"
        ) from None
    except Exception as error:  # garbage makes torch.load raise many types: struct.error, IndexError, ...
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a checkpoint ({type(error).__name__}: {_first_line(error)})"
        ) from None
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED):
        raise CheckpointError(f"{path} is not a seq2seq checkpoint (expected the keys {', '.join(REQUIRED)})")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload['format_version']}, "
            f"this version of seq2seq reads format {FORMAT_VERSION}"
        )
    return payload


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, at most 200 characters (some messages are empty)."""
    return (str(error).splitlines() or [""])[0][:200]
