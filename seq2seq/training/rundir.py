"""A run directory's owner: one trainer at a time, and nothing left behind by a run that never started.

The lock is an ``flock`` on ``RUN/.lock``, taken before anything else is written into the run
directory and held for the life of the process; the kernel releases it on any exit, a crash or
``kill -9`` included, so a resumed run can always take it again. The file keeps the holder's PID,
which the refusal names.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from seq2seq.errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a second trainer
    fcntl = None

LOCK_NAME = ".lock"


class RunDirLock:
    """``with RunDirLock(out_dir):`` owns ``out_dir`` or raises :class:`RunDirError` naming the holder."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> RunDirLock:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(self.fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(self.fd)
                self.fd = None
                raise RunDirError(
                    f"{self.out_dir} is in use by another trainer (PID {holder}); wait for it to finish "
                    "or train into another directory (hydra.run.dir=...)"
                ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        if only_the_lock(self.out_dir):  # the run wrote nothing: leave no trace of it
            with contextlib.suppress(OSError):
                self.path.unlink()
                self.out_dir.rmdir()
        os.close(self.fd)  # releases the flock
        self.fd = None


def only_the_lock(out_dir: Path) -> bool:
    try:
        return [p.name for p in out_dir.iterdir()] == [LOCK_NAME]
    except OSError:
        return False
