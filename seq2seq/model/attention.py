"""Attention: one interface, four score functions.

Every attention module is called the same way::

    keys_proj = attn.prepare(keys)                      # once per batch, before the decoder loop
    context, weights = attn(query, keys, values, mask, keys_proj)

``query`` is ``(B, H)`` for one decoder step or ``(B, T, H)`` for all steps at once (the Luong
fast path); ``keys``/``values`` are the encoder states ``(B, S, K)``; ``mask`` is ``(B, S)``,
True at real source positions. The weights are a softmax over source positions in which padded
positions get exactly zero weight, so each row sums to 1.

Score functions (Luong et al. 2015, Sec. 3.1, Eq. 8; Bahdanau et al. 2015, Appendix A.1.2):

    dot          q . k
    scaled_dot   q . k / sqrt(d)            (Vaswani et al. 2017, Eq. 1)
    general      q . (W k)
    concat       v . tanh(W_q q + W_k k)    (additive)

Whatever a score can compute from the keys alone (``W k``, ``W_k k``) is computed in
:meth:`Attention.prepare`, once per batch, not once per decoder step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import SCORES


class Attention(nn.Module):
    """Masked softmax attention; subclasses define :meth:`score` (and :meth:`prepare`)."""

    def prepare(self, keys: Tensor) -> Tensor:
        """Per-batch key precompute: ``(B, S, K) -> (B, S, *)``. Identity unless overridden."""
        return keys

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        """Raw scores ``(B, T, S)`` for queries ``(B, T, H)`` against prepared keys."""
        raise NotImplementedError

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor, keys_proj: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(context, weights)``: ``(B, V), (B, S)`` for a ``(B, H)`` query, or
        ``(B, T, V), (B, T, S)`` for a ``(B, T, H)`` query."""
        if keys_proj is None:
            keys_proj = self.prepare(keys)
        one_step = query.dim() == 2
        if one_step:
            query = query.unsqueeze(1)  # (B, 1, H)
        scores = self.score(query, keys_proj)  # (B, T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = F.softmax(scores, dim=-1)  # exp(-inf) = 0: padding gets exactly zero weight
        context = torch.bmm(weights, values)  # (B, T, S) @ (B, S, V) -> (B, T, V)
        if one_step:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights


class DotScore(Attention):
    """``score(q, k) = q . k`` (Luong Eq. 8, dot); query and key sizes must match."""

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        return torch.bmm(query, keys_proj.transpose(1, 2))  # (B, T, H) @ (B, H, S) -> (B, T, S)


class ScaledDotScore(Attention):
    """``score(q, k) = q . k / sqrt(d)``: keeps the softmax from saturating as ``d`` grows."""

    def __init__(self, key_size: int):
        super().__init__()
        self.scale = 1.0 / math.sqrt(key_size)

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        return torch.bmm(query, keys_proj.transpose(1, 2)) * self.scale


class GeneralScore(Attention):
    """``score(q, k) = q . (W k)`` (Luong Eq. 8, general); ``W k`` is prepared once per batch."""

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        self.key_layer = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, K) -> (B, S, H)

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        return torch.bmm(query, keys_proj.transpose(1, 2))  # (B, T, S)


class ConcatScore(Attention):
    """``score(q, k) = v . tanh(W_q q + W_k k)`` (additive; Bahdanau Eq. 6 / Luong concat).

    ``W_k k`` is prepared once per batch; each step only projects the query.
    """

    def __init__(self, query_size: int, key_size: int, size: int):
        super().__init__()
        self.key_layer = nn.Linear(key_size, size, bias=False)
        self.query_layer = nn.Linear(query_size, size, bias=False)
        self.energy_layer = nn.Linear(size, 1, bias=False)  # v

    def prepare(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, K) -> (B, S, A)

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        q = self.query_layer(query)  # (B, T, A)
        energy = torch.tanh(q.unsqueeze(2) + keys_proj.unsqueeze(1))  # (B, T, 1, A) + (B, 1, S, A) -> (B, T, S, A)
        return self.energy_layer(energy).squeeze(-1)  # (B, T, S)


def build_attention(score: str, query_size: int, key_size: int, size: int = 256) -> Attention:
    """The attention module for a score name (``attention.score`` in the config, one of :data:`SCORES`)."""
    if score in ("dot", "scaled_dot") and query_size != key_size:
        raise ValueError(f"{score} attention needs equal query and key sizes, got {query_size} and {key_size}")
    builders = {
        "dot": lambda: DotScore(),
        "scaled_dot": lambda: ScaledDotScore(key_size),
        "general": lambda: GeneralScore(query_size, key_size),
        "concat": lambda: ConcatScore(query_size, key_size, size),
    }
    assert tuple(builders) == SCORES, "every score of seq2seq.config.SCORES has a module here"
    if score not in builders:
        raise ValueError(f"unknown attention score {score!r}; choose {', '.join(SCORES)}")
    return builders[score]()
