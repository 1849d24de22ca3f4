"""A run in its directory: ``train(config, out_dir)``.

One run lives in one directory: TensorBoard events, ``train.log``, ``config.json``, ``best.pt``
(written at each validation that improves BLEU) and ``last.pt`` (every
``train.checkpoint_every`` steps, at each validation and at the end). ``train.resume=true``
continues from ``last.pt`` with the optimiser, scheduler, RNG and data position restored, so a
run killed at any moment (even with ``kill -9``) continues exactly as if it had never stopped.
Under ``torchrun`` the same loop trains data-parallel (see :mod:`seq2seq.training.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from seq2seq.config import Config
from seq2seq.errors import RunDirError, Seq2SeqError
from seq2seq.hardware import pick_device, resolve_precision
from seq2seq.training.checkpoint import load_checkpoint, remove_partial_writes
from seq2seq.training.distributed import Distributed
from seq2seq.training.progress import run_logging
from seq2seq.training.rundir import RunDirLock
from seq2seq.training.signals import scheduler
from seq2seq.training.trainer import Trainer

log = logging.getLogger("seq2seq")

MODEL_SECTIONS = ("data", "model", "attention")  # what a resumed run may not change ...
MOVABLE = ("data.root",)  # ... except where the corpus lives, which may move between sessions


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _resume_config(config: Config, saved: dict[str, Any], overrides: list[str] | None) -> Config:
    """The checkpoint's data/model/attention with this invocation's train section.

    An override that would change the model or data is refused; with ``overrides=None``
    (a direct call) every difference counts as one.
    """
    current = config.to_dict()
    old = _flatten({k: saved[k] for k in MODEL_SECTIONS})
    new = _flatten({k: current[k] for k in MODEL_SECTIONS})
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in MOVABLE)
    if overrides is not None:
        keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
        changed = [k for k in changed if any(k == o or k.startswith(o + ".") for o in keys)]
    if changed:
        details = "; ".join(f"{k}: {old.get(k)!r} in the checkpoint, {new.get(k)!r} now" for k in changed[:5])
        raise RunDirError(
            f"train.resume cannot change the model or data of a run ({details}); "
            "drop those overrides or start a new run in another directory"
        )
    sections = {k: saved[k] for k in MODEL_SECTIONS}
    sections["data"] = {**sections["data"], "root": current["data"]["root"]}
    return Config.from_dict({**sections, "train": current["train"]})


def _open_run_dir(out_dir: Path, config: Config, overrides: list[str] | None) -> tuple[Config, dict | None, str]:
    """Refuse to overwrite a run; on resume, load ``last.pt`` and the config it was trained with.

    Also returns the line ``train.log`` gets about it. ``train.resume=auto`` resumes where ``last.pt``
    exists and starts a new run where the directory holds no checkpoint: the same command serves a
    first start and every restart (a preempted VM, a SLURM requeue, ``torchrun --max-restarts``).
    """
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    mode = config.train.resume
    requeued_by = scheduler()
    if requeued_by is not None and mode != "auto":
        raise RunDirError(
            f"this run is under {requeued_by}, which starts the same command again after a preemption or a "
            f"lost node; add train.resume=auto so that command continues from last.pt (train.resume={mode} now)"
        )
    if mode == "auto":
        if last.exists():
            config, payload = _resume_from(last, config, overrides)
            return config, payload, f"train.resume=auto: {last} exists, resuming at step {_step(payload)}"
        if best.exists():
            raise RunDirError(
                f"train.resume=auto: {out_dir} holds best.pt but no last.pt, so there is nothing to resume and a "
                "new run would overwrite best.pt; move best.pt away or choose another directory (hydra.run.dir=...)"
            )
        return config, None, f"train.resume=auto: no checkpoint in {out_dir}, starting a new run"
    if not mode:
        if last.exists() or best.exists():
            raise RunDirError(
                f"{out_dir} already holds a checkpoint; continue it with train.resume=true (or auto) "
                "or choose another directory (hydra.run.dir=...)"
            )
        return config, None, "starting a new run"
    if not last.exists():
        raise RunDirError(
            f"train.resume=true but {last} does not exist; point hydra.run.dir at the run to continue "
            "(train.resume=auto starts a new run where there is none)"
        )
    config, payload = _resume_from(last, config, overrides)
    return config, payload, f"train.resume=true: resuming {last} at step {_step(payload)}"


def _check_shared(out_dir: Path, dist: Distributed, wait: float = 5.0) -> None:
    """Refuse a run directory that some rank cannot see: every host must read what rank 0 writes.

    Otherwise a host resumes (or starts afresh) from what its own disk holds, and two runs diverge
    under one name. Rank 0 writes a file with a new name (no host can have cached its absence; NFS
    shows a new file to another client once it is closed) and every rank looks for it, for up to
    ``wait`` seconds.
    """
    if not dist.enabled:
        return
    token = dist.broadcast(secrets.token_hex(8) if dist.is_main else None)
    probe = out_dir / f".shared-{token}"
    if dist.is_main:
        probe.write_text(token)
    dist.barrier()
    deadline = time.monotonic() + wait
    while not (seen := _reads(probe) == token) and time.monotonic() < deadline:
        time.sleep(0.2)
    views = dist.gather((seen, socket.gethostname()))
    if dist.is_main:
        probe.unlink()
    blind = [f"rank {rank} on {host}" for rank, (ok, host) in enumerate(views) if not ok]
    if blind:
        raise RunDirError(
            f"the run directory {out_dir} is not shared between the hosts: {', '.join(blind)} cannot read what "
            f"rank 0 on {views[0][1]} writes there; put hydra.run.dir on a filesystem every host mounts "
            "at the same path (NFS, Lustre, ...)"
        )


def _reads(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _resume_from(last: Path, config: Config, overrides: list[str] | None) -> tuple[Config, dict]:
    payload = load_checkpoint(last)
    if "optimizer" not in payload:
        raise RunDirError(f"{last} has no optimiser state, so it cannot be resumed")
    return _resume_config(config, payload["config"], overrides), payload


def _step(payload: dict[str, Any]) -> int:
    return int(payload.get("progress", {}).get("step", 0))


def train(config: Config, out_dir: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train (or, with ``train.resume``, continue) one run in ``out_dir``; returns the final metrics.

    ``overrides`` are the command-line overrides, used to tell a deliberate change of the model on
    resume from a default that differs from the checkpoint's config. Called from Python, the run
    logs to train.log as under ``train.py``, and prints its lines where nothing else does.
    """
    dist = Distributed.from_env(config.train.device)
    try:
        with run_logging():
            result = _train_in(config, out_dir, overrides, dist)
    except BaseException:
        dist.close(wait=False)  # a peer may be stuck in a collective; torchrun stops it
        raise
    dist.close(wait=True)
    return result


def _train_in(config: Config, out_dir: str | Path, overrides: list[str] | None, dist: Distributed) -> dict[str, Any]:
    out_dir = Path(dist.broadcast(str(out_dir)))  # Hydra's ${now:} may differ by a second between ranks
    # a device the machine lacks, or a precision it cannot run, fails before the run dir is touched
    device = pick_device(dist.device(config.train.device), "train.device")
    resolve_precision(config.train.precision, device, "train.precision")
    with RunDirLock(out_dir) if dist.is_main else contextlib.nullcontext():  # before anything is written
        _check_shared(out_dir, dist)
        config, resume, how = _open_run_dir(out_dir, config, overrides)
        dist.barrier()  # every rank has checked the directory before rank 0 writes into it
        if not dist.is_main:
            return _run_quietly(config, out_dir, resume, dist)
        for path in remove_partial_writes(out_dir):
            log.info("removed %s, left by an interrupted checkpoint write", path.name)
        # nothing in the run dir changes until the run can start: the setup's log lines wait in memory
        held = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
        log.addHandler(held)
        log.info(how)
        try:
            trainer = Trainer(config, out_dir, resume, dist)
        finally:
            log.removeHandler(held)
        handler = logging.FileHandler(out_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        held.setTarget(handler)
        held.close()  # writes the held lines into train.log
        log.addHandler(handler)
        try:
            (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
            return trainer.run()
        except BaseException as error:  # train.log says why the run ended; the console already does
            handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, _why_it_ended(error), None, None))
            raise
        finally:
            log.removeHandler(handler)
            handler.close()


def _why_it_ended(error: BaseException) -> str:
    """The line train.log ends with when an exception ends the run."""
    if isinstance(error, Seq2SeqError):
        return f"error: {error}"  # what train.py prints
    if isinstance(error, KeyboardInterrupt):
        return "stopped at once by a second Ctrl-C; last.pt holds the last checkpoint written"
    first = (str(error).splitlines() or [""])[0][:300]
    return f"the run ended with {type(error).__name__}: {first} (the traceback is on the console)"


def _run_quietly(config: Config, out_dir: Path, resume: dict | None, dist: Distributed) -> dict[str, Any]:
    """Ranks other than 0 train without logging progress (warnings and errors still show)."""
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        return Trainer(config, out_dir, resume, dist).run()
    finally:
        log.setLevel(level)
