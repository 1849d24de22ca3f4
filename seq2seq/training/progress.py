"""Where a run stands: the counters a checkpoint keeps, the train/* averages, the progress line."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

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
