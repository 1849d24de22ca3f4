"""The CPU-speed plumbing under the model: the same computations as ``nn.LSTM`` and ``nn.Dropout``, faster on a CPU.

- :func:`unpacked_lstm`: a (bi)LSTM over padded batches with one fused oneDNN call per layer and
  direction, where packed sequences would take PyTorch's generic per-step loop on a CPU;
- :func:`lstm_step`: one step of a stacked LSTM from precomputed input gates, so that the
  decoder's step loop multiplies only what depends on the recurrence, in one matrix multiply
  (:func:`joint_weight`);
- :func:`matmul_ready`: a tensor cast once per batch to autocast's matmul dtype;
- :class:`Dropout`: inverted dropout with a vectorised mask on CPU.

``tests/test_model.py`` pins each to the plain computation it replaces (packed ``nn.LSTM``, a
length-1 ``nn.LSTM`` call, ``nn.Dropout``'s distribution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def matmul_ready(t: Tensor) -> Tensor:
    """``t`` in the dtype autocast gives matmul inputs (itself outside autocast).

    Autocast casts a float32 operand at every call and caches only the casts of leaf weights, so a
    tensor that every decoder step multiplies (the encoder states, a slice of a weight) is cast
    once per batch here instead of once per step.
    """
    device = t.device.type
    if torch.is_autocast_enabled(device):
        return t.to(torch.get_autocast_dtype(device))
    return t


class Dropout(nn.Module):
    """Inverted dropout, as ``nn.Dropout``, with the mask drawn from random 16-bit integers on CPU.

    Each element is zeroed with probability ``p`` and the rest scaled by ``1 / (1 - p)``, where on
    CPU ``p`` is rounded to a multiple of 2^-16 (at most 7.6e-6 away) and the scale follows it, so
    the expected output is exactly the input. ``bernoulli_`` with a scalar ``p`` is not vectorised
    on CPU, and ``torch.rand`` spends a 32-bit draw on every element; four 16-bit draws out of
    each 64-bit one make the mask in half the time. Other devices keep the fused kernel.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 65536)  # zeroed: the 16-bit draws below -32768 + threshold
        self.scale = 65536 / (65536 - self.threshold) if self.threshold < 65536 else 0.0

    def mask(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor | None:
        """The scaled keep-mask (0 or ``1 / (1 - p)``) that :meth:`forward` multiplies a CPU tensor of
        ``shape`` by, for code that applies it itself; None when dropout is off."""
        if not self.training or self.p == 0.0:
            return None
        size = 1
        for n in shape:
            size *= n
        draws = torch.randint(-(2**63), 2**63 - 1, ((size + 3) // 4,), dtype=torch.int64)
        bits = draws.view(torch.int16)[:size].view(shape)
        return (bits >= self.threshold - 32768).to(dtype).mul_(self.scale)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        return x * self.mask(x.shape, x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def unpacked_lstm(rnn: nn.LSTM, dropout: nn.Module, emb: Tensor, lens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``rnn`` over padded ``emb (B, S, E)`` -> states ``(B, S, K)`` zero at padding, and the summary ``(B, K)``.

    The same as ``rnn`` over packed sequences, with one unpacked LSTM call per layer and direction:
    on CPU packed sequences take PyTorch's generic per-step LSTM, unpacked ones oneDNN's fused
    kernel (bf16 under autocast). Padding sits after each sentence, so the forward direction reads
    every real token before any padding; the backward direction reads each sentence reversed
    within its length (``flip``), which puts its padding last too. What the LSTMs compute at
    padded positions is zeroed, as ``pad_packed_sequence`` leaves it. The summary is the top
    layer's forward last and backward first state.
    """
    batch, length = mask.shape
    positions = torch.arange(length, device=emb.device)[None, :]
    flip = torch.where(mask, lens[:, None] - 1 - positions, positions)  # (B, S); its own inverse
    last = (lens - 1)[:, None, None]  # (B, 1, 1): each sentence's last real position
    hidden = rnn.hidden_size
    zeros = emb.new_zeros(1, batch, hidden)
    x = emb
    for layer in range(rnn.num_layers):
        if layer > 0:
            x = dropout(x)  # as nn.LSTM's dropout between layers
        outs, finals = [], []
        for suffix in ("", "_reverse")[: 2 if rnn.bidirectional else 1]:
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            params = [getattr(rnn, f"{name}_l{layer}{suffix}") for name in names]
            inp = x if not suffix else x.gather(1, flip[:, :, None].expand_as(x))
            out, _, _ = torch.lstm(inp, (zeros, zeros), params, True, 1, 0.0, rnn.training, False, True)
            finals.append(out.gather(1, last.expand(-1, 1, hidden)).squeeze(1))  # (B, H_enc)
            outs.append(out if not suffix else out.gather(1, flip[:, :, None].expand_as(out)))
        x = torch.cat(outs, -1)  # (B, S, K)
    return x * mask[:, :, None].to(x.dtype), torch.cat(finals, -1)


def joint_weight(rnn: nn.LSTM, start: int) -> Tensor:
    """The first layer's input weight from column ``start`` on, beside its recurrent weight: ``(4H, I - start + H)``.

    A decoder step whose LSTM input has a part that depends on the recurrence (a context vector,
    Luong's h~_{t-1}) multiplies ``[that part; h_{t-1}]`` by it: one matrix multiply per step
    instead of two, and two in the backward pass instead of four.
    """
    return matmul_ready(torch.cat([rnn.weight_ih_l0[:, start:], rnn.weight_hh_l0], 1))


def lstm_step(
    rnn: nn.LSTM, gates_in: Tensor, h0: Tensor, c0: Tensor, recurrent_included: bool = False
) -> tuple[Tensor, Tensor]:
    """One step of the stacked LSTM ``rnn`` -> new ``(h, c)``, each ``(L, B, H)``.

    ``gates_in (B, 4H)`` is the first layer's whole input times its input weight, biases included
    (the decoder computes the embedding's share for all positions at once), and with
    ``recurrent_included`` also ``h0[0]`` times the recurrent weight (see :func:`joint_weight`).
    Matches ``rnn`` over a length-1 sequence, including dropout between layers.
    """
    gates = gates_in if recurrent_included else gates_in + F.linear(h0[0], rnn.weight_hh_l0)  # i, f, g, o
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c0[0] + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    if rnn.num_layers == 1:  # a view, where stacking one tensor would copy it
        return h.unsqueeze(0), c.unsqueeze(0)
    hs, cs = [h], [c]
    for layer in range(1, rnn.num_layers):
        x = F.dropout(hs[-1], rnn.dropout, rnn.training)
        h, c = torch.lstm_cell(
            x,
            (h0[layer], c0[layer]),
            getattr(rnn, f"weight_ih_l{layer}"),
            getattr(rnn, f"weight_hh_l{layer}"),
            getattr(rnn, f"bias_ih_l{layer}"),
            getattr(rnn, f"bias_hh_l{layer}"),
        )
        hs.append(h)
        cs.append(c)
    return torch.stack(hs), torch.stack(cs)
