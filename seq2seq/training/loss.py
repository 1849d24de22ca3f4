"""Label-smoothed cross-entropy with the gradient in one pass (Szegedy et al. 2016, Sec. 7).

    loss_i = (1 - eps) * -log p(y_i) + eps * mean_v(-log p(v))

The autograd graph of the composite (log_softmax, gather, mean) makes four passes over the
``(N, V)`` logits in the backward pass and is a sixth of a training step on CPU. Its gradient
has a closed form, ``softmax(x) - (1 - eps) * onehot(y) - eps / V``, computed here in place.

Training and validation go one step further (:func:`generator_loss`): only the real (non-PAD)
target positions reach the output layer, and the output layer and the loss run together over
chunks of 128 of them, so the float32 logits and log-probabilities of the whole batch never
exist, only each chunk's, which stay in cache; what is kept for the backward pass is the logits'
gradient in the matmul dtype.

:class:`NonFinitePolicy` decides what a NaN/inf loss does to the run (``train.nonfinite``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import TrainConfig
from seq2seq.data.vocab import PAD
from seq2seq.errors import TrainingError
from seq2seq.model import Seq2Seq
from seq2seq.model.lstm import matmul_ready
from seq2seq.training.progress import Progress

log = logging.getLogger("seq2seq")

CHUNK = 128  # target positions per chunk of generator_loss: (128, V) float32 is ~2 MB at V = 4k


def _loss_terms(logp: Tensor, target: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
    """Summed loss and summed NLL of log-probabilities ``(N, V)`` against ``target (N,)`` (no PAD)."""
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
    loss = (1.0 - smoothing) * nll - smoothing * logp.mean(dim=-1)
    return loss.sum(), nll.sum()


def _logits_grad(logp: Tensor, target: Tensor, smoothing: float, out: Tensor) -> None:
    """d loss / d logits ``softmax - (1 - eps) onehot - eps / V`` into ``out`` (``logp`` may be overwritten)."""
    grad = torch.exp(logp, out=out) if out.dtype == logp.dtype else logp.exp_()
    grad.sub_(smoothing / logp.size(1))
    grad.scatter_add_(1, target.unsqueeze(1), grad.new_full((grad.size(0), 1), smoothing - 1.0))
    if grad is not out:
        out.copy_(grad)


class _GeneratorCrossEntropy(torch.autograd.Function):
    """The smoothed cross-entropy of ``features @ weight.T + bias``, chunk by chunk over the rows."""

    @staticmethod
    def forward(ctx, features, weight, bias, target, smoothing: float, chunk: int, backward: bool):
        rows, vocab = features.size(0), weight.size(0)
        with torch.autocast(features.device.type, enabled=False):  # the caller chose the dtypes
            bias = None if bias is None else bias.to(features.dtype)
            # d loss / d logits, in the matmul dtype; nothing to keep when no backward pass follows
            grad = features.new_empty(rows, vocab) if backward else None
            loss = features.new_zeros((), dtype=torch.float32)
            nll = torch.zeros_like(loss)
            for start in range(0, rows, chunk):
                logp = torch.log_softmax(F.linear(features[start : start + chunk], weight, bias).float(), dim=-1)
                t = target[start : start + chunk]
                loss_t, nll_t = _loss_terms(logp, t, smoothing)
                loss += loss_t
                nll += nll_t
                if grad is not None:
                    _logits_grad(logp, t, smoothing, grad[start : start + chunk])
        if grad is not None:
            ctx.save_for_backward(features, weight, grad)
        ctx.has_bias = bias is not None
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_nll: Tensor):  # grad_nll: the NLL is only reported
        features, weight, grad = ctx.saved_tensors
        with torch.autocast(features.device.type, enabled=False):
            # the float32 scale rounds once per element; a bf16 copy of 1 / tokens would skew every
            # gradient by the same factor (up to 0.4 %), which clipping and Adam's moments would see
            grad_features = torch.mm(grad, weight).mul_(grad_loss)
            grad_weight = torch.mm(grad.t(), features).mul_(grad_loss)
            grad_bias = grad.sum(0, dtype=torch.float32).mul_(grad_loss) if ctx.has_bias else None
        return grad_features, grad_weight, grad_bias, None, None, None, None


def generator_loss(
    features: Tensor, generator: nn.Linear, target: Tensor, smoothing: float = 0.0, chunk: int = CHUNK
) -> tuple[Tensor, Tensor]:
    """Summed label-smoothed loss and summed NLL of ``generator(features)`` over the non-PAD
    positions of ``target``, without the whole ``(B, T, V)`` logits; only the loss carries a gradient.

    ``features`` is ``(B, T, D)``, ``target`` ``(B, T)``. Under autocast the matrix multiplies run
    in its dtype, as ``generator`` would, and the softmax in float32. Without autograd (validation)
    the logits' gradient is neither computed nor kept: the memory is one chunk's.
    """
    rows, target = features.reshape(-1, features.size(-1)), target.reshape(-1)
    real = (target != PAD).nonzero().squeeze(1)  # one host sync; padding never reaches the output layer
    if real.numel() < target.numel():
        rows, target = rows.index_select(0, real), target.index_select(0, real)
    rows = matmul_ready(rows)
    weight, bias = matmul_ready(generator.weight), generator.bias
    backward = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (rows, weight, bias))
    return _GeneratorCrossEntropy.apply(rows, weight, bias, target, smoothing, chunk, backward)


class Objective(nn.Module):
    """A model's training loss as a module: what DDP wraps, since it hooks ``forward``."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(
        self, src: Tensor, src_lens: Tensor, tgt_in: Tensor, tgt_out: Tensor, teacher_forcing: float, smoothing: float
    ) -> tuple[Tensor, Tensor]:
        """Summed label-smoothed loss and summed NLL of ``tgt_out`` given the source and ``tgt_in``."""
        features, _ = self.model.features(src, src_lens, tgt_in, teacher_forcing)
        return generator_loss(features, self.model.generator, tgt_out, smoothing)


class NonFinitePolicy:
    """``train.nonfinite``: a NaN/inf loss or gradient (the same on every rank) stops training, or skips the batch.

    Skipping gives up after ``train.max_skips`` such batches in a row. The update is checked before
    it happens, so the weights and ``last.pt`` stay good either way.
    """

    ADVICE = "lower train.lr, keep train.clip_grad_norm on, or use train.precision=fp32"

    def __init__(self, tc: TrainConfig):
        self.tc, self.in_a_row = tc, 0

    def good(self) -> None:
        self.in_a_row = 0

    def bad(self, loss: float, progress: Progress, last: Path) -> None:
        """Raise :class:`TrainingError`, or count the skipped batch in ``progress`` and warn."""
        step = progress.step + 1
        self.in_a_row += 1
        if self.tc.nonfinite == "stop":
            raise TrainingError(
                f"the loss or its gradient became {loss} at step {step}; the weights were not updated and the "
                f"last good checkpoint is {last}; {self.ADVICE} (or train.nonfinite=skip)"
            )
        if self.in_a_row >= self.tc.max_skips:
            raise TrainingError(
                f"{self.in_a_row} batches in a row had a non-finite loss or gradient (step {step}); "
                f"the last good checkpoint is {last}; {self.ADVICE}"
            )
        progress.skipped += 1
        log.warning("step %d: loss %s is not finite; batch skipped (%d so far)", step, loss, progress.skipped)
