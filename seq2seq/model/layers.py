"""The Transformer's parts: multi-head attention, feed-forward, position encodings, encoder and decoder layers.

Vaswani et al. (2017), "Attention is all you need", with the position encodings the length study
compares. Shape letters: B batch, N heads, T queries, S keys, L positions, d model size, h a
head's size d / N.

Attention is the lessons' arithmetic, one head at a time (Eq. 1), N heads side by side (Eq. 4)::

    q_n = (x W_Q)_n    k_n = (m W_K)_n    v_n = (m W_V)_n           each head's slice of the projections
    score_n(i, j) = q_n,i . k_n,j / sqrt(h)  (+ b_n(j - i), relative)   scaled dot
    w_n(i, ·) = softmax_j score_n(i, j)                                  masked: padding and the future get 0
    head_n,i = sum_j w_n(i, j) v_n,j
    out_i = W_O [head_1,i; ...; head_N,i]

``prepare`` (W_K m) and ``prepare_values`` (W_V m) are computed once per batch for the
encoder-decoder attention, as the LSTM's attention prepares its keys. Where nothing asks for the
weights, the same product runs as PyTorch's fused ``scaled_dot_product_attention``, except when
training with attention dropout on a CPU, where that kernel has no dropout of its own and falls
back to this arithmetic anyway; ``tests/test_transformer.py`` pins the two together.

Positions (``model.positions``):

    sinusoidal  PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(...), added to the embeddings (Sec. 3.5)
    learned     a table of model.max_positions rows, added; a longer input is refused in one line
    relative    a learned bias per head and offset bucket added to every self-attention score (T5, Raffel et al.
                2020, Sec. 2.1: log-spaced buckets up to model.max_positions); no absolute positions at all
    rope        q and k of self-attention rotated by their position (Su et al. 2021, RoFormer Eq. 34), so
                q_i . k_j depends on i - j only; no absolute positions at all
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.errors import DataError
from seq2seq.model.lstm import Dropout


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over N heads, with W_Q, W_K, W_V and W_O (Vaswani et al. 2017, Eq. 1 and 4).

    ``record``, when a list, receives ``{"scores", "weights"}`` ``(B, N, T, S)``, ``"query"`` ``(B, N, T, h)``
    and ``"values"`` ``(B, N, S, h)`` of every call (:func:`seq2seq.model.transformer.recording`), or the
    weights alone with ``record_scores`` False; a call that records, or is asked for weights, computes them explicitly instead of
    through the fused kernel.
    """

    def __init__(self, d_model: int, heads: int, dropout: float, rotary: Rotary | None = None):
        super().__init__()
        self.heads, self.head_size = heads, d_model // heads
        self.scale = 1.0 / math.sqrt(self.head_size)
        self.query_layer = nn.Linear(d_model, d_model)  # W_Q
        # W_K has no bias: q . b is the same for every key, so the softmax ignores it; its gradient is zero
        # up to rounding, which Adam would blow up into updates of pure noise
        self.key_layer = nn.Linear(d_model, d_model, bias=False)  # W_K
        self.value_layer = nn.Linear(d_model, d_model)  # W_V
        self.output_layer = nn.Linear(d_model, d_model)  # W_O
        self.dropout = Dropout(dropout)  # on the weights (attention dropout)
        self.rotary = rotary
        self.record: list | None = None
        self.record_scores = True  # record {"scores", "weights"}; False: the weights tensor alone

    def split(self, x: Tensor) -> Tensor:
        """``(B, L, d) -> (B, N, L, h)``: each head's slice of the last dimension."""
        return x.unflatten(-1, (self.heads, self.head_size)).transpose(1, 2)

    def prepare(self, keys: Tensor, positions: Tensor | None = None) -> Tensor:
        """``W_K keys`` per head ``(B, N, S, h)``; rotated by ``positions (S,)`` with rotary positions."""
        k = self.split(self.key_layer(keys))
        return k if self.rotary is None else self.rotary(k, positions)

    def prepare_values(self, values: Tensor) -> Tensor:
        """``W_V values`` per head ``(B, N, S, h)``."""
        return self.split(self.value_layer(values))

    def query(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """``W_Q x`` per head ``(B, N, T, h)``; rotated by ``positions (T,)`` with rotary positions."""
        q = self.split(self.query_layer(x))
        return q if self.rotary is None else self.rotary(q, positions)

    def score(self, q: Tensor, k: Tensor) -> Tensor:
        """Raw scores ``q . k / sqrt(h)``: ``(B, N, T, h) x (B, N, S, h) -> (B, N, T, S)``."""
        return torch.matmul(q, k.transpose(-1, -2)) * self.scale

    def forward(
        self,
        x: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor,
        bias: Tensor | None = None,
        positions: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``x (B, T, d)`` attends over prepared ``k``, ``v`` ``(B, N, S, h)``; ``mask`` broadcasts to
        ``(B, N, T, S)``, True where a query may look; ``bias`` ``(1, N, T, S)`` is added to the scores.
        Returns ``(B, T, d)`` and, when asked for or recorded, the weights ``(B, N, T, S)``."""
        q = self.query(x, positions)  # (B, N, T, h)
        weights = None
        # the fused kernel cannot drop weights on a CPU (it falls back to this arithmetic, with a slower mask)
        dropping = self.training and self.dropout.p > 0 and q.device.type == "cpu"
        if need_weights or self.record is not None or dropping:
            scores = self.score(q, k)  # (B, N, T, S)
            if bias is not None:
                scores = scores + bias
            weights = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # padding, future: exactly 0
            if self.record is not None:
                kept = weights.detach()
                call = {"scores": scores.detach(), "weights": kept, "query": q.detach(), "values": v.detach()}
                self.record.append(call if self.record_scores else kept)
            heads = torch.matmul(self.dropout(weights), v)  # (B, N, T, h)
        else:
            attn_mask = mask if bias is None else bias.masked_fill(~mask, float("-inf")).to(q.dtype)
            dropout = self.dropout.p if self.training else 0.0
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.output_layer(heads.transpose(1, 2).flatten(2)), weights  # W_O [head_1; ...; head_N]


class FeedForward(nn.Module):
    """``FFN(x) = W_2 ReLU(W_1 x + b_1) + b_2`` at every position (Vaswani et al. 2017, Eq. 2)."""

    def __init__(self, d_model: int, ff_size: int, dropout: float):
        super().__init__()
        self.inner = nn.Linear(d_model, ff_size)
        self.outer = nn.Linear(ff_size, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.outer(self.dropout(F.relu(self.inner(x))))


# -- positions -------------------------------------------------------------------------------


def sinusoidal_table(positions: Tensor, d_model: int) -> Tensor:
    """``PE(p, 2i) = sin(p / 10000^(2i/d))``, ``PE(p, 2i+1) = cos(p / 10000^(2i/d))``: ``(L,) -> (L, d)``."""
    rates = torch.exp(torch.arange(0, d_model, 2, device=positions.device) * (-math.log(10000.0) / d_model))
    angles = positions.float()[:, None] * rates[None, :]  # (L, d/2)
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(1)  # interleaved: sin, cos, sin, cos ...


class AbsolutePositions(nn.Module):
    """Sinusoidal or learned absolute positions, added to the scaled embeddings."""

    def __init__(self, kind: str, d_model: int, max_positions: int):
        super().__init__()
        self.kind, self.d_model, self.max_positions = kind, d_model, max_positions
        self.table = nn.Embedding(max_positions, d_model) if kind == "learned" else None

    def forward(self, positions: Tensor) -> Tensor:
        """``(L,) -> (L, d)``."""
        if self.table is None:
            return sinusoidal_table(positions, self.d_model)
        last = int(positions.max()) + 1 if positions.numel() else 0
        if last > self.max_positions:
            raise DataError(
                f"an input of {last} tokens is longer than the learned position table (model.max_positions="
                f"{self.max_positions}); split the input, or train with a larger model.max_positions or "
                "model.positions=sinusoidal|relative|rope, which have no limit"
            )
        return self.table(positions)


class Rotary(nn.Module):
    """Rotary positions (Su et al. 2021): each pair ``(x_i, x_{i+h/2})`` of a head turned by ``p * theta_i``.

    Rotating q by its position i and k by j makes ``q . k`` a function of ``j - i``: the angle
    between them is what the positions add, so no position is ever out of range.
    """

    def __init__(self, head_size: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("rates", base ** (-torch.arange(0, head_size, 2).float() / head_size), persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """``x (B, N, L, h)`` rotated by ``positions (L,)``."""
        angles = positions.float()[:, None] * self.rates[None, :]  # (L, h/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        first, second = x.chunk(2, dim=-1)  # (B, N, L, h/2) each
        return torch.cat([first * cos - second * sin, first * sin + second * cos], -1)


def relative_buckets(offset: Tensor, buckets: int, max_distance: int, bidirectional: bool) -> Tensor:
    """T5's bucket of each key-minus-query offset: exact for near offsets, log-spaced up to ``max_distance``.

    Bidirectional (the encoder) gives half the buckets to keys after the query; the causal
    decoder only sees keys at or before it, so every bucket is for the past.
    """
    bucket = torch.zeros_like(offset)
    if bidirectional:
        buckets //= 2
        bucket = bucket + (offset > 0).long() * buckets
        distance = offset.abs()
    else:
        distance = (-offset).clamp(min=0)
    exact = buckets // 2
    spread = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (buckets - exact)
    far = (exact + spread.long()).clamp(max=buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


class RelativeBias(nn.Module):
    """A learned score bias per head and offset bucket, shared by every layer of a stack (T5)."""

    def __init__(self, heads: int, buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional
        self.bias = nn.Embedding(buckets, heads)

    def forward(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        """``(T,), (S,) -> (1, N, T, S)``: the bias of ``k_pos - q_pos`` for each head."""
        offset = k_positions[None, :] - q_positions[:, None]  # (T, S)
        bucket = relative_buckets(offset, self.buckets, max(self.max_distance, 2), self.bidirectional)
        return self.bias(bucket).permute(2, 0, 1).unsqueeze(0)


# -- layers ----------------------------------------------------------------------------------


class Sublayer(nn.Module):
    """A residual around ``f`` with layer norm: ``x + f(LN(x))`` (pre) or ``LN(x + f(x))`` (post, the paper's)."""

    def __init__(self, d_model: int, dropout: float, pre: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.pre = pre

    def inner(self, x: Tensor) -> Tensor:
        """What ``f`` reads: ``LN(x)`` before, ``x`` itself after."""
        return self.norm(x) if self.pre else x

    def outer(self, x: Tensor, fx: Tensor) -> Tensor:
        """The residual sum, normalised after with post-norm."""
        out = x + self.dropout(fx)
        return out if self.pre else self.norm(out)


class EncoderLayer(nn.Module):
    """Self-attention over the source, then the feed-forward network, each in a :class:`Sublayer`."""

    def __init__(self, d_model: int, heads: int, ff_size: int, dropout: float, attention_dropout: float, pre, rotary):
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, heads, attention_dropout, rotary)
        self.feed_forward = FeedForward(d_model, ff_size, dropout)
        self.attend, self.transform = Sublayer(d_model, dropout, pre), Sublayer(d_model, dropout, pre)

    def forward(self, x: Tensor, mask: Tensor, bias: Tensor | None, positions: Tensor) -> Tensor:
        """``x (B, S, d)``; ``mask (B, 1, 1, S)``: real source positions."""
        h = self.attend.inner(x)
        attn = self.self_attention
        out, _ = attn(h, attn.prepare(h, positions), attn.prepare_values(h), mask, bias, positions)
        x = self.attend.outer(x, out)
        return self.transform.outer(x, self.feed_forward(self.transform.inner(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, encoder-decoder attention, feed-forward, each in a :class:`Sublayer`.

    The self-attention's keys and values of earlier positions come from ``cache`` when decoding
    one position at a time; the cross-attention's come from the encoder, prepared once per batch.
    """

    def __init__(self, d_model: int, heads: int, ff_size: int, dropout: float, attention_dropout: float, pre, rotary):
        super().__init__()
        self.self_attention = MultiHeadAttention(d_model, heads, attention_dropout, rotary)
        self.cross_attention = MultiHeadAttention(d_model, heads, attention_dropout)
        self.feed_forward = FeedForward(d_model, ff_size, dropout)
        self.attend_self, self.attend_source, self.transform = (Sublayer(d_model, dropout, pre) for _ in range(3))

    def forward(
        self,
        x: Tensor,
        cross: tuple[Tensor, Tensor],
        src_mask: Tensor,
        self_mask: Tensor,
        bias: Tensor | None,
        positions: Tensor,
        cache: tuple[Tensor, Tensor] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
        """``x (B, T, d)`` at ``positions (T,)``: output, this layer's self-attention keys and values
        ``(B, N, t + T, h)`` (the cache to keep), and the cross-attention weights ``(B, N, T, S)`` if asked."""
        h = self.attend_self.inner(x)
        attn = self.self_attention
        k, v = attn.prepare(h, positions), attn.prepare_values(h)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        out, _ = attn(h, k, v, self_mask, bias, positions)
        x = self.attend_self.outer(x, out)
        out, weights = self.cross_attention(self.attend_source.inner(x), *cross, src_mask, need_weights=need_weights)
        x = self.attend_source.outer(x, out)
        x = self.transform.outer(x, self.feed_forward(self.transform.inner(x)))
        return x, (k, v), weights
