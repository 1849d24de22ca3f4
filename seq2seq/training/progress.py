"""Where a run stands and how it shows: the counters a checkpoint keeps, the train/* averages, the
progress line, the bar, the console lines of a run started from Python, and the slowdown note.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm

from seq2seq.config import TrainConfig

log = logging.getLogger("seq2seq")


@dataclass
class Progress:
    step: int = 0  # optimiser updates, counted across resumes
    epoch: int = 0
    batch: int = 0  # batches of the current epoch already trained on
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0
    last_valid_step: int = -1
    train_seconds: float = 0.0  # wall time spent in this run's training processes
    skipped: int = 0  # batches dropped for a non-finite loss (train.nonfinite=skip)
    # how the epoch in progress was cut into batches: [batch_tokens, seed, pad_to_multiple]. A run
    # resumed mid-epoch with other values finishes the epoch as it was cut, so that `batch` counts
    # batches of the same list and no pair is trained twice or skipped; the new values start at the
    # next epoch
    epoch_batching: list[int] | None = None


def epoch_batching(progress: Progress, tc: TrainConfig) -> list[int]:
    """``[batch_tokens, seed, pad_to_multiple]`` that cut the current epoch into batches (and records them)."""
    current = [tc.batch_tokens, tc.seed, tc.pad_to_multiple]
    saved = progress.epoch_batching
    if progress.batch > 0 and saved is not None and list(saved) != current:
        log.warning(
            "epoch %d was cut into batches with batch_tokens=%d, seed=%d, pad_to_multiple=%d and is %d "
            "batches in: it finishes that way; the new values apply from epoch %d",
            progress.epoch + 1,
            *saved,
            progress.batch,
            progress.epoch + 2,
        )
        return list(saved)
    progress.epoch_batching = current
    return current


class Window:
    """The sums behind one ``train/*`` log line: loss, NLL and tokens over the updates since the last."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss = self.nll = self.grad = 0.0
        self.tokens = self.steps = 0
        self.start = time.monotonic()

    def add(self, loss_sum: float, nll_sum: float, grad_norm: float, tokens: int) -> None:
        self.loss += loss_sum
        self.nll += nll_sum
        self.grad += grad_norm
        self.tokens += tokens
        self.steps += 1

    def pause(self, seconds: float) -> None:
        """Leave ``seconds`` (a validation, say) out of the window's tokens per second."""
        self.start += seconds

    def values(self, lr: float) -> dict[str, float]:
        """The window's averages as logged: per target token, per update, per second."""
        tokens = max(self.tokens, 1)
        return {
            "train/loss": self.loss / tokens,
            "train/ppl": math.exp(min(self.nll / tokens, 50.0)),
            "train/lr": lr,
            "train/grad_norm": self.grad / max(self.steps, 1),
            "train/tokens_per_s": self.tokens / max(time.monotonic() - self.start, 1e-9),
        }


def final_metrics(progress: Progress, metrics: dict[str, float]) -> dict[str, float]:
    """What a run reports at its end: the best validation, the last one's valid/*, batches skipped."""
    final = {
        "best/valid_bleu": progress.best_bleu,
        "best/step": float(progress.best_step),
        **{k: v for k, v in metrics.items() if k.startswith("valid/")},
    }
    if progress.skipped:
        final["skipped_batches"] = float(progress.skipped)
    return final


def eta_seconds(progress: Progress, max_steps: int | None, time_budget: float | None, rate: float) -> float | None:
    """Seconds to the nearer of ``max_steps`` (at ``rate`` seconds an update) and ``time_budget``; None if unbounded."""
    remaining = []
    if max_steps is not None:
        remaining.append((max_steps - progress.step) * rate)
    if time_budget is not None:
        remaining.append(time_budget - progress.train_seconds)
    return min(remaining) if remaining else None


def progress_line(
    progress: Progress, values: dict[str, float], max_steps: int | None, eta_seconds: float | None, elapsed: float
) -> str:
    """``step 250/2,000 | epoch 2 | loss 3.412 ppl 25.1 | lr 1.0e-03 | 7,650 tok/s | 0:35 elapsed, ETA 4:05``."""
    eta = f", ETA {clock(max(eta_seconds, 0.0))}" if eta_seconds is not None else ""
    total = f"/{max_steps:,}" if max_steps is not None else ""
    return (
        f"step {progress.step:,}{total} | epoch {progress.epoch + 1} | loss {values['train/loss']:.3f} "
        f"ppl {values['train/ppl']:.1f} | lr {values['train/lr']:.1e} | {values['train/tokens_per_s']:,.0f} tok/s "
        f"| {clock(elapsed)} elapsed{eta}"
    )


def clock(seconds: float) -> str:
    """``3725`` -> ``1:02:05``; ``65`` -> ``1:05``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# -- where progress shows ------------------------------------------------------------------------


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (tqdm's test: IPython imported, run by an ``IPKernelApp``)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def _widget_bar() -> type[tqdm] | None:
    """tqdm's notebook bar in a Jupyter kernel where ipywidgets is installed, else None."""
    if not in_notebook() or importlib.util.find_spec("ipywidgets") is None:
        return None
    from tqdm.notebook import tqdm as notebook_tqdm

    return notebook_tqdm


def bar_shows() -> bool:
    """Whether a bar shows progress: a widget in a notebook with ipywidgets, tqdm's bar on a terminal.

    Where none does (off a terminal, in a notebook without ipywidgets) the progress lines say it.
    """
    return _widget_bar() is not None or (not in_notebook() and sys.stderr.isatty())


class Bar:
    """The run's one progress bar: towards ``max_steps`` across epochs (the elapsed time is the
    run's), or through each epoch where no ``max_steps`` is set."""

    def __init__(self, max_steps: int | None, step: int, main: bool):
        widget = _widget_bar()
        shown = main and (widget is not None or not in_notebook())  # a kernel without ipywidgets: the lines
        self.max_steps = max_steps
        self.bar = (widget or tqdm)(
            total=max_steps,
            initial=step if max_steps else 0,
            disable=None if shown else True,  # tqdm's terminal bar hides itself off a terminal
            leave=widget is not None,  # a notebook keeps the finished bar; a terminal keeps its log lines
            unit="batch",
        )

    def epoch(self, epoch: int, batches: int, done: int) -> None:
        """A new (or resumed) epoch of ``batches`` batches, ``done`` of them trained already."""
        self.bar.set_description(f"epoch {epoch + 1}")
        if not self.max_steps:
            self.bar.reset(total=batches)
            self.bar.update(done)

    def update(self) -> None:
        self.bar.update()

    def loss(self, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def close(self) -> None:
        self.bar.close()


class _AboveTheBar:
    """A console stream whose lines tqdm writes above its bar instead of through it."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        tqdm.write(text, file=self.stream, end="")

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def lines_above_the_bar() -> Iterator[None]:
    """Console log lines (root's handlers and ``seq2seq``'s) go above the bar, each handler keeping its filters.

    (tqdm's ``logging_redirect_tqdm`` replaces the handlers, dropping their filters, and imports
    ``tqdm.auto``, which warns in a notebook without ipywidgets.)
    """
    consoles = [
        h
        for logger in (logging.getLogger(), log)
        for h in logger.handlers
        if type(h) in (logging.StreamHandler, _Console) and h.stream in (sys.stdout, sys.stderr)
    ]
    streams = [h.setStream(_AboveTheBar(h.stream)) for h in consoles]
    try:
        yield
    finally:
        for handler, stream in zip(consoles, streams):
            handler.setStream(stream)


class _Console(logging.StreamHandler):
    """``train.py``'s console for a run started from Python: time and message, progress lines
    only where no bar shows."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        self.bar = bar_shows()
        self.addFilter(lambda record: not (self.bar and getattr(record, "progress_line", False)))


class _CallersHandlers(logging.Handler):
    """Passes on to the caller's own handlers the records at the level the caller set."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


@contextlib.contextmanager
def run_logging() -> Iterator[None]:
    """For one run: ``seq2seq``'s INFO lines reach train.log whoever started it, and a console.

    ``train.py`` sets logging up at INFO; a call from Python (a notebook, a script) usually sets up
    nothing, and Python then drops INFO records before any handler sees them, train.log's
    included. So the run's logger takes INFO; where nothing printed its lines, they print as
    ``train.py`` prints them; where the caller's handlers print at a higher level, those handlers
    still get only that level.
    """
    level, propagate, wanted = log.level, log.propagate, log.getEffectiveLevel()
    added: logging.Handler | None = None
    if wanted > logging.INFO:
        log.setLevel(logging.INFO)
        log.propagate = False
        if logging.getLogger().handlers:
            added = _CallersHandlers(wanted)
        else:
            added = _Console()
        log.addHandler(added)
    try:
        yield
    finally:
        if added is not None:
            log.removeHandler(added)
        log.setLevel(level)
        log.propagate = propagate


# -- a machine too busy ------------------------------------------------------------------------


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class SlowdownWatch:
    """Says once (train.log and console) when other programs slow training down, and the fix.

    Two signs: the load average exceeds the cores before training starts, or tokens/s falls under
    a third of the best of the first windows, in two windows in a row. Torch's threads spin-wait
    for each other, so a machine whose cores are busy elsewhere can train ten times slower with
    two threads than with one.
    """

    FIRST = 3  # the windows that set the pace
    FACTOR = 3.0

    def __init__(self, threads: int, where: str):
        self.threads, self.where = threads, where
        self.pace = 0.0
        self.windows = self.slow = 0
        self.said = False

    def start(self, load: float | None = None, cores: int | None = None) -> None:
        """Before the first step: the load average of the last minute against the cores (this machine's by default)."""
        if load is None and hasattr(os, "getloadavg"):
            load = os.getloadavg()[0]
        cores = cores or available_cores()
        if load is not None and load > cores:
            self._say(
                f"the load average is {load:.1f} on {cores} CPU cores before training starts: other programs are busy"
            )

    def window(self, tokens_per_s: float) -> None:
        self.windows += 1
        if self.windows <= self.FIRST:
            self.pace = max(self.pace, tokens_per_s)
            return
        self.slow = self.slow + 1 if tokens_per_s * self.FACTOR < self.pace else 0
        if self.slow == 2:
            self._say(
                f"training runs at {tokens_per_s:,.0f} tok/s, under a third of the {self.pace:,.0f} tok/s of its "
                "first steps: other programs are probably busy on the CPU cores"
            )

    def _say(self, what: str) -> None:
        if self.said:
            return
        self.said = True
        if self.threads > 1:
            fix = (
                f"with {self.threads} threads each step waits for the slowest core, and one thread is often several "
                "times faster on a busy machine: stop (Ctrl-C saves last.pt) and continue the run in "
                f"{self.where} with train.resume=true train.threads=1"
            )
        else:
            fix = "training already uses one thread; it will run faster once the other programs finish"
        log.warning("%s; %s", what, fix)
