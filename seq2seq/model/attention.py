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

Multi-head attention (``attention.heads = N``; Vaswani et al. 2017, Sec. 3.2.2, on an LSTM
encoder-decoder as in RNMT+, Chen et al. 2018, Sec. 3.1). What a score compares is split into N
heads of equal size, each head scores and softmaxes on its own, and each head mixes its share of
the projected values::

    score_n(q, k) = q_n . k_n                          dot          (q_n: the n-th slice of q)
                  = q_n . k_n / sqrt(d / N)            scaled dot
                  = q_n . (W k)_n = q_n . W_n k        general      (W_n: the n-th rows of W)
                  = v_n . tanh((W_q q)_n + (W_k k)_n)  concat       (v_n: the n-th slice of v)
    w_n       = softmax_j score_n(q, k_j)              one distribution over the source per head
    head_n    = sum_j w_nj (W_V k_j)_n                 (W_V k, the values, prepared once per batch)
    context   = W_O [head_1; ...; head_N]              (Vaswani Eq. 4's MultiHead(Q, K, V))

The projections ``W k``, ``W_k k`` and ``W_V k`` are prepared once per batch, as with one head;
the score parameters are those of one head (the per-head ``W_n`` and ``v_n`` are slices of them),
and ``W_V``, ``W_O`` are added. With N = 1 the module is exactly the one-head attention above, the
lesson's, with no ``W_V`` or ``W_O`` (they would be one linear map that the decoder's next layer
absorbs). The weights a multi-head module returns are the mean over its heads (each row still sums
to 1, padding still gets 0), so decoding, beam search and the statistics read them as they read
one head's; :meth:`Attention.head_weights` gives each head's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import SCORES


class Attention(nn.Module):
    """Masked softmax attention; subclasses define :meth:`score` (and :meth:`prepare_keys`).

    ``heads`` splits the score into that many heads (see the module's docstring); ``key_size`` is
    the size of the keys and values, which the heads' value and output projections need.
    """

    def __init__(self, key_size: int | None = None, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.recording: list[Tensor] | None = None  # :func:`recording_heads`
        if heads > 1:
            if key_size is None or key_size % heads:
                raise ValueError(f"{heads} heads do not divide the key/value size {key_size}")
            self.value_layer = nn.Linear(key_size, key_size, bias=False)  # W_V
            self.output_layer = nn.Linear(key_size, key_size, bias=False)  # W_O

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """What the score needs from the keys alone, ``(B, S, K) -> (B, S, *)``. Identity unless overridden."""
        return keys

    def prepare(self, keys: Tensor) -> Tensor:
        """Per-batch key precompute: :meth:`prepare_keys`, arranged per head ``(B, N, S, *)`` with heads."""
        prepared = self.prepare_keys(keys)
        return prepared if self.heads == 1 else self.split(prepared).contiguous()

    def prepare_values(self, values: Tensor) -> Tensor:
        """Per-batch value precompute: ``values`` itself with one head, ``W_V values`` per head ``(B, N, S, V/N)``."""
        return values if self.heads == 1 else self.split(self.value_layer(values)).contiguous()

    def split(self, x: Tensor) -> Tensor:
        """``(B, L, F) -> (B, N, L, F / N)``: the last dimension cut into the heads' slices."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        """Raw scores for queries ``(B, T, H)`` against prepared keys: ``(B, T, S)``, or ``(B, N, T, S)`` with heads."""
        raise NotImplementedError

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        keys_proj: Tensor | None = None,
        values_proj: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(context, weights)``: ``(B, V), (B, S)`` for a ``(B, H)`` query, or
        ``(B, T, V), (B, T, S)`` for a ``(B, T, H)`` query; with heads, the weights' mean over heads."""
        if keys_proj is None:
            keys_proj = self.prepare(keys)
        one_step = query.dim() == 2
        if one_step:
            query = query.unsqueeze(1)  # (B, 1, H)
        scores = self.score(query, keys_proj)  # (B, T, S), or (B, N, T, S)
        if self.heads == 1:
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
            weights = F.softmax(scores, dim=-1)  # exp(-inf) = 0: padding gets exactly zero weight
            context = torch.bmm(weights, values)  # (B, T, S) @ (B, S, V) -> (B, T, V)
        else:
            if values_proj is None:
                values_proj = self.prepare_values(values)
            head_weights = self.softmax(scores, mask)  # (B, N, T, S)
            heads = torch.matmul(head_weights, values_proj)  # (B, N, T, S) @ (B, N, S, V/N) -> (B, N, T, V/N)
            context = self.output_layer(heads.transpose(1, 2).flatten(2))  # W_O [head_1; ...; head_N] (B, T, V)
            weights = head_weights.mean(1)  # (B, T, S)
            if self.recording is not None:
                self.recording.append(head_weights.detach())
        if one_step:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights

    @staticmethod
    def softmax(scores: Tensor, mask: Tensor) -> Tensor:
        """Each head's masked softmax over the source: ``scores (B, N, T, S)``, ``mask (B, S)``."""
        return F.softmax(scores.masked_fill(~mask[:, None, None, :], float("-inf")), dim=-1)

    def head_weights(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """Each head's weights ``(B, N, T, S)`` for queries ``(B, T, H)`` (``N = 1`` with one head)."""
        scores = self.score(query, self.prepare(keys))
        return self.softmax(scores if self.heads > 1 else scores.unsqueeze(1), mask)


class DotScore(Attention):
    """``score(q, k) = q . k`` (Luong Eq. 8, dot); query and key sizes must match. Heads: ``q_n . k_n``."""

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        if self.heads > 1:  # (B, N, T, Q/N) @ (B, N, Q/N, S) -> (B, N, T, S)
            return torch.matmul(self.split(query), keys_proj.transpose(-1, -2))
        return torch.bmm(query, keys_proj.transpose(1, 2))  # (B, T, H) @ (B, H, S) -> (B, T, S)


class ScaledDotScore(DotScore):
    """``score(q, k) = q . k / sqrt(d)``: keeps the softmax from saturating as ``d`` grows
    (``d`` is a head's size, ``key_size / N``, with heads)."""

    def __init__(self, key_size: int, heads: int = 1):
        super().__init__(key_size, heads)
        self.scale = 1.0 / math.sqrt(key_size // heads)

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        return super().score(query, keys_proj) * self.scale


class GeneralScore(DotScore):
    """``score(q, k) = q . (W k)`` (Luong Eq. 8, general); ``W k`` is prepared once per batch.
    Heads: ``q_n . (W k)_n``, i.e. head n's own ``W_n``, the n-th ``H / N`` rows of ``W``."""

    def __init__(self, query_size: int, key_size: int, heads: int = 1):
        super().__init__(key_size, heads)
        self.key_layer = nn.Linear(key_size, query_size, bias=False)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, K) -> (B, S, H)


class ConcatScore(Attention):
    """``score(q, k) = v . tanh(W_q q + W_k k)`` (additive; Bahdanau Eq. 6 / Luong concat).

    ``W_k k`` is prepared once per batch; each step only projects the query. Heads (RNMT+'s
    multi-head additive attention): ``v_n . tanh((W_q q)_n + (W_k k)_n)`` over each head's
    ``A / N`` slice, ``v_n`` the n-th slice of ``v``.
    """

    def __init__(self, query_size: int, key_size: int, size: int, heads: int = 1):
        super().__init__(key_size, heads)
        if size % heads:
            raise ValueError(f"{heads} heads do not divide the additive score's size {size}")
        self.key_layer = nn.Linear(key_size, size, bias=False)
        self.query_layer = nn.Linear(query_size, size, bias=False)
        self.energy_layer = nn.Linear(size, 1, bias=False)  # v

    def prepare(self, keys: Tensor) -> Tensor:
        return self.key_layer(keys)  # (B, S, K) -> (B, S, A), with heads too: they are cut after the tanh

    def score(self, query: Tensor, keys_proj: Tensor) -> Tensor:
        q = self.query_layer(query)  # (B, T, A)
        energy = torch.tanh(q.unsqueeze(2) + keys_proj.unsqueeze(1))  # (B, T, 1, A) + (B, 1, S, A) -> (B, T, S, A)
        if self.heads > 1:  # v_n . energy_n, each head's A/N slice: (B, T, S, N, A/N) summed -> (B, N, T, S)
            return (energy * self.energy_layer.weight[0]).unflatten(-1, (self.heads, -1)).sum(-1).permute(0, 3, 1, 2)
        return self.energy_layer(energy).squeeze(-1)  # (B, T, S)


@contextmanager
def recording_heads(attention: Attention) -> Iterator[list[Tensor]]:
    """Within the block, every call of a multi-head ``attention`` appends its heads' weights
    ``(B, N, T, S)`` (T = 1 for a decoder step) to the list it yields; ``torch.cat(calls, 2)`` is the pass's."""
    calls: list[Tensor] = []
    attention.recording = calls
    try:
        yield calls
    finally:
        attention.recording = None


def build_attention(score: str, query_size: int, key_size: int, size: int = 256, heads: int = 1) -> Attention:
    """The attention module for a score name (``attention.score`` in the config, one of :data:`SCORES`)."""
    if score in ("dot", "scaled_dot") and query_size != key_size:
        raise ValueError(f"{score} attention needs equal query and key sizes, got {query_size} and {key_size}")
    builders = {
        "dot": lambda: DotScore(key_size, heads),
        "scaled_dot": lambda: ScaledDotScore(key_size, heads),
        "general": lambda: GeneralScore(query_size, key_size, heads),
        "concat": lambda: ConcatScore(query_size, key_size, size, heads),
    }
    assert tuple(builders) == SCORES, "every score of seq2seq.config.SCORES has a module here"
    if score not in builders:
        raise ValueError(f"unknown attention score {score!r}; choose {', '.join(SCORES)}")
    if heads > 1 and query_size % heads:
        raise ValueError(f"{heads} heads do not divide the query size {query_size}")
    return builders[score]()
