"""SIGINT and SIGTERM during training: finish the current step, save ``last.pt`` and stop."""

from __future__ import annotations

import logging
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
            for sig in (signal.SIGINT, signal.SIGTERM):
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
