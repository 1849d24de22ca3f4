"""Crash points for testing recovery: ``SEQ2SEQ_CRASH_AT=<point>:<n>`` kills the process.

The trainer calls :func:`crash_point` at the places where a crash is most damaging: in the
middle of an optimiser step (``step``: after the backward pass, before the update), in the
middle of writing a checkpoint (``checkpoint``: the temporary file written but not flushed,
synced or renamed) and in the middle of validation (``validation``: after the loss pass, before
decoding). With the variable set, the n-th time the process reaches that point it sends itself
SIGKILL, which cannot be caught: no handler runs, no file is closed, exactly like ``kill -9``
or a machine losing power. Unset (always, outside tests), a call is one dictionary lookup.

``SEQ2SEQ_CRASH_ONCE=<file>`` beside it crashes only where that file does not exist yet, and
creates it first: a process that ``torchrun --max-restarts`` starts again with the same
environment then runs through (the node-loss test). ``SEQ2SEQ_CRASH_SIGNAL=USR2`` (or TERM, INT)
sends that signal instead of SIGKILL: a scheduler's warning arriving in the middle of a step (the
submitit requeue test).
"""

from __future__ import annotations

import os
import signal

POINTS = ("step", "checkpoint", "validation")
_counts: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get("SEQ2SEQ_CRASH_AT")
    if not spec:
        return None
    point, _, n = spec.partition(":")
    if point not in POINTS or not n.isdigit():
        raise ValueError(f"SEQ2SEQ_CRASH_AT={spec!r}: expected <point>:<n> with point one of {', '.join(POINTS)}")
    return point, int(n)


def crash_point(point: str) -> None:
    """Die here, as if killed with ``kill -9``, when ``SEQ2SEQ_CRASH_AT`` names this point and count."""
    target = _target()
    if target is None or target[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == target[1]:
        once = os.environ.get("SEQ2SEQ_CRASH_ONCE")
        if once:
            if os.path.exists(once):
                return
            with open(once, "w"):
                pass
        name = os.environ.get("SEQ2SEQ_CRASH_SIGNAL", "KILL").upper().removeprefix("SIG")
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
