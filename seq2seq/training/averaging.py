"""An exponential moving average of the weights, for validating and translating.

    average <- average + (1 - d_n) * (weights - average),    d_n = min(decay, (1 + n) / (10 + n))

after the n-th optimiser update (Polyak & Juditsky 1992; the warm-up of ``d_n`` is TensorFlow's
``ExponentialMovingAverage(num_updates=n)``). Early on the average covers roughly the last tenth
of training, so it never drags the random initialisation along; ``decay`` caps how long the
memory gets. Averaging smooths the noise of the last updates of a run at a constant learning
rate, which is where a time-bounded run ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.params = [p for p in model.parameters() if p.is_floating_point()]
        self.average = [p.detach().clone() for p in self.params]

    def rate(self, updates: int) -> float:
        """The weight ``1 - d_n`` of the newest weights after ``updates`` optimiser updates."""
        return 1.0 - min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, updates: int) -> None:
        """Fold in the model's current weights; ``updates`` counts optimiser updates so far, this one included."""
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], self.rate(updates))

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights under the model's ``state_dict`` names (tied weights under each name)."""
        by_param = {id(p): a for p, a in zip(self.params, self.average)}
        named = {name: by_param[id(p)] for name, p in self.model.named_parameters(remove_duplicate=False)}
        return {name: named.get(name, value) for name, value in self.model.state_dict().items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Set the average from a model ``state_dict`` (an averaged one, or plain weights to start from)."""
        index = {id(p): i for i, p in enumerate(self.params)}
        for name, p in self.model.named_parameters():
            if id(p) in index:
                self.average[index[id(p)]].copy_(state[name])

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its own again after it."""
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, saved)
