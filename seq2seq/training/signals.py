"""SIGINT and SIGTERM during training: finish the current step, save ``last.pt`` and stop.

Under submitit (``hydra/launcher=submitit_slurm`` or ``submitit_local``) the scheduler's warning
signal, SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` names another, is one more: SLURM sends it before
the time limit (``--signal``) and on preemption. The loop saves ``last.pt`` and stops as for
SIGTERM, then :func:`pass_on` raises the signal again for submitit's own handler, which requeues
the same command; with ``train.resume=auto`` the requeued job continues from ``last.pt``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger("seq2seq")


class StopSignals:
    """While entered, SIGINT/SIGTERM set :attr:`received` instead of killing the process.

    The loop checks :attr:`received` after each step (and after a validation) and stops there; a
    second SIGINT aborts at once. Outside the main thread (where Python cannot install handlers)
    entering changes nothing.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._saved: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, *scheduler_signals()):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("received %s: saving and stopping after this step", signal.Signals(signum).name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""


def scheduler() -> str | None:
    """What requeues this process with the same command after a preemption, or None.

    ``"submitit"`` under ``hydra/launcher=submitit_*``; ``"torchrun --max-restarts"`` under
    ``torchrun --max-restarts=N`` with N > 0.
    """
    if os.environ.get("SUBMITIT_EXECUTOR"):
        return "submitit"
    if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0:
        return "torchrun --max-restarts"
    return None


def scheduler_signals() -> tuple[int, ...]:
    """The warning signal of a scheduler that requeues: submitit's preemption signal, else none."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return ()
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper()
    number = getattr(signal, name if name.startswith("SIG") else f"SIG{name}", None)
    return (number,) if isinstance(number, signal.Signals) else ()


def pass_on(stop: str) -> None:
    """After ``last.pt`` is saved: hand a scheduler's warning signal to the handler it replaced.

    ``stop`` is the trainer's reason to stop (``"signal SIGUSR2"``). submitit's handler requeues
    the job and exits; anything else returns at once.
    """
    for sig in scheduler_signals():
        handler = signal.getsignal(sig)
        if stop == f"signal {sig.name}" and callable(handler):
            log.info("passing %s on to submitit, which requeues this job (train.resume=auto continues it)", sig.name)
            signal.raise_signal(sig)
