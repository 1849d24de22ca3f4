"""The learning-rate policy, one object: which schedule, when the rate moves, and its state for resuming.

``train.scheduler`` picks one of:

- ``budget``: held at ``lr`` for ``decay_start`` of the budget (``max_steps`` or ``max_time``),
  then decayed linearly to ``min_lr``; a function of progress alone, written before each update;
- ``plateau``: multiplied by ``lr_factor`` after ``lr_patience`` validations without a better BLEU;
- ``warmup``: linear warmup over ``warmup_steps``, then decay with 1/sqrt(step) (Vaswani et al. 2017);
- ``constant``;
- ``auto``: ``budget`` when the run is bounded (``max_steps`` or ``max_time``), else ``plateau``.

Every scheduler but ``warmup`` (which has its own) starts with a linear warmup over
``train.warmup_steps`` updates when it is above 0; unset, it is the model's: none for the LSTMs
(as they were measured), :data:`WARMUP` for the Transformer, whose attention layers diverge or
stall at the full rate from random weights (Vaswani et al. 2017, Sec. 5.3; Xiong et al. 2020).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from seq2seq.config import TrainConfig

WARMUP = {"lstm": 0, "transformer": 800}  # train.warmup_steps when unset, by model family (warmup scheduler: 1000)


def budget_lr(lr: float, min_lr: float, done: float, decay_start: float = 0.0) -> float:
    """The LR of ``train.scheduler=budget`` after a fraction ``done`` of the budget.

    Held at ``lr`` until ``decay_start``, then decayed linearly to ``min_lr`` at ``done = 1``.
    Under a fixed budget a decaying rate beats a constant or step-wise one (Li et al. 2020,
    "Budgeted training"): the run ends annealed instead of mid-descent. Holding the rate first
    (warmup-stable-decay) keeps the fast early progress and still anneals at the end.
    """
    decay = (min(done, 1.0) - decay_start) / (1.0 - decay_start)
    return max(min_lr, lr * (1.0 - max(decay, 0.0)))


class LearningRate:
    """``train.scheduler`` over ``optimizer``; the trainer tells it when an update or a validation happens."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, tc: TrainConfig, time_budget: float | None, family: str = "lstm"
    ):
        self.optimizer, self.tc, self.time_budget = optimizer, tc, time_budget
        self.kind = tc.scheduler
        if tc.scheduler == "auto":
            self.kind = "budget" if tc.max_steps is not None or tc.max_time is not None else "plateau"
        self.warmup = tc.warmup_steps if tc.warmup_steps is not None else WARMUP[family]
        self._scheduler: Any = None
        if self.kind == "plateau":
            self._scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=tc.lr_factor, patience=tc.lr_patience, min_lr=tc.min_lr
            )
        elif self.kind == "warmup":
            warmup = tc.warmup_steps or 1000
            self._scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))
            )

    @property
    def current(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def before_update(self, step: int, train_seconds: float) -> None:
        """``budget``: the rate at this point of the budget (``step`` updates and ``train_seconds`` done);
        any scheduler but ``warmup``: the linear warmup's share of it over the first updates."""
        if self.kind == "warmup" or (self.kind != "budget" and step > self.warmup):
            return
        lr = self.tc.lr
        if self.kind == "budget":
            done = 0.0
            if self.tc.max_steps is not None:
                done = step / self.tc.max_steps
            if self.tc.max_time is not None:
                done = max(done, train_seconds / self.time_budget)
            lr = budget_lr(self.tc.lr, self.tc.min_lr, done, self.tc.decay_start)
        if self.warmup > 0:
            lr *= min(1.0, (step + 1) / self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def after_update(self) -> None:
        if self.kind == "warmup":
            self._scheduler.step()

    def after_validation(self, bleu: float) -> None:
        if self.kind == "plateau":
            self._scheduler.step(bleu)

    def state_dict(self) -> dict[str, Any] | None:
        return None if self._scheduler is None else self._scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self._scheduler is not None and state is not None:
            self._scheduler.load_state_dict(state)
