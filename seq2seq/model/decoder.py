"""The decoder and its three wirings, as the papers write them.

    tgt_in ─► Decoder ── none:     s_t = LSTM([y_{t-1}; summary], s_{t-1})           (Cho et al. 2014)
                      ── bahdanau: c_t = attn(s_{t-1}, H); s_t = LSTM([y_{t-1}; c_t], s_{t-1})
                      ── luong:    s_t = LSTM([y_{t-1}; h~_{t-1}], s_{t-1}); c_t = attn(s_t, H);
                                   h~_t = tanh(W_c [c_t; s_t])                        (Luong Eq. 5)
              ──► features (B, T, D)

Shape letters: B batch, S source length, T target length, E embedding size, K encoder output
size, H decoder size, D feature size (E when the output layer is tied to the target embedding,
else H). The initial state comes from the encoder summary through a bridge, s0 = tanh(W summary).

Each decoder has a per-step :meth:`Decoder.step` (used by greedy and beam search, and by training
with a teacher-forcing ratio below 1) and a :meth:`Decoder.forward` over the whole target side.
``none`` and Luong without input feeding run ``forward`` as one fused LSTM call with no Python
loop over target positions; the test suite checks that fast path against the step loop. Bahdanau
and Luong with input feeding keep the loop, but in float32 on a CPU with one decoder layer it
runs as one autograd function (:mod:`seq2seq.model.recurrence`: backward through time by hand,
weight gradients after the loop), pinned to the step loop, gradients included, by
``tests/test_recurrence.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import AttentionConfig, ModelConfig
from seq2seq.data.vocab import PAD
from seq2seq.model.attention import Attention, build_attention
from seq2seq.model.encoder import Memory
from seq2seq.model.lstm import Dropout, joint_weight, lstm_step, matmul_ready
from seq2seq.model.recurrence import bahdanau_loop, fused_loop_applies, luong_feed_loop


@dataclass
class State:
    """Decoder recurrent state: ``h``, ``c`` are ``(L, B, H)``; ``feed`` is Luong's h~_{t-1} ``(B, D)``."""

    h: Tensor
    c: Tensor
    feed: Tensor | None = None

    def select(self, index: Tensor) -> State:
        feed = None if self.feed is None else self.feed.index_select(0, index)
        return State(self.h.index_select(1, index), self.c.index_select(1, index), feed)


class Decoder(nn.Module):
    """Shared parts of the three wirings: embedding, stacked LSTM, bridge, readout.

    Subclasses define :meth:`rnn_input_size`, :meth:`step` and, optionally, a faster
    :meth:`forward_parallel` used when every input token is the reference (teacher forcing 1).
    """

    parallel = False  # True when forward_parallel exists
    fuse = True  # False: the teacher-forced loop always runs step by step (tests compare the two)

    def __init__(self, vocab_size: int, memory_size: int, feature_size: int, cfg: ModelConfig):
        super().__init__()
        self.attention: Attention | None = None  # set by the wirings that attend
        self.hidden_size, self.layers = cfg.decoder_size, cfg.decoder_layers
        self.embedding_size = cfg.embedding_size
        self.memory_size, self.feature_size = memory_size, feature_size
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size, padding_idx=PAD)
        self.dropout = Dropout(cfg.dropout)
        self.rnn = nn.LSTM(
            self.rnn_input_size(cfg.embedding_size),
            cfg.decoder_size,
            cfg.decoder_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.decoder_layers > 1 else 0.0,
        )
        # Bridge (Bahdanau et al. 2015, A.2.2: s0 = tanh(W_s h_1)): initial h and c of every layer.
        self.bridge = nn.Linear(memory_size, 2 * cfg.decoder_layers * cfg.decoder_size)

    def rnn_input_size(self, embedding_size: int) -> int:
        raise NotImplementedError

    def prepare(self, memory: Memory) -> Memory:
        """Per-batch precompute before any decoder step: key projections and what the steps reuse."""
        if self.attention is not None:
            memory.states = matmul_ready(memory.states)
            memory.keys_proj = self.attention.prepare(memory.states)
            memory.values_proj = self.attention.prepare_values(memory.states)
        # the first LSTM layer's input weight, split at the embedding's columns, sliced and cast once
        # per batch: autocast caches casts of whole weights only (and none under inference_mode)
        memory.embed_weight = matmul_ready(self.rnn.weight_ih_l0[:, : self.embedding_size])  # (4H, E)
        memory.gate_bias = self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0
        return memory

    def init_state(self, memory: Memory) -> State:
        init = torch.tanh(self.bridge(memory.summary))  # (B, 2 * L * H)
        h, c = init.view(-1, 2, self.layers, self.hidden_size).permute(1, 2, 0, 3).contiguous()  # (L, B, H) each
        return State(h, c)

    def input_gates(self, emb: Tensor, memory: Memory) -> Tensor:
        """The embedding's share of the first LSTM layer's gates, biases included, ``(..., E) -> (..., 4H)``.

        It does not depend on the recurrence, so training computes it for all target positions in
        one matmul before the step loop instead of once per step.
        """
        return F.linear(emb, memory.embed_weight, memory.gate_bias)

    def rnn_step(
        self, gates_in: Tensor, state: State, memory: Memory, extra: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One step of the stacked LSTM (:func:`~seq2seq.model.lstm.lstm_step`) -> new ``(h, c)``, each ``(L, B, H)``.

        ``gates_in (B, 4H)``: :meth:`input_gates` of the step's embedding (plus the summary's share
        for ``none``); ``extra (B, I - E)``: the rest of the LSTM input (a context vector or
        h~_{t-1}), multiplied together with ``h_{t-1}`` by ``memory.joint_weight``.
        """
        if extra is None:
            return lstm_step(self.rnn, gates_in, state.h, state.c)
        joint = F.linear(torch.cat([extra, state.h[0]], -1), memory.joint_weight)  # (B, 4H)
        return lstm_step(self.rnn, gates_in + joint, state.h, state.c, recurrent_included=True)

    def step(self, y_prev: Tensor, state: State, memory: Memory) -> tuple[Tensor, State, Tensor | None]:
        """One decoder step: ``y_prev (B,)`` -> readout input ``(B, R)``, new state, weights ``(B, S)`` or None."""
        # cast here, under autocast: the readout input concatenates it with the bf16 states, which a
        # float32 embedding would turn into three float32 copies per step (the teacher-forced loop
        # in forward keeps a float32 embedding, whose two gradients then sum in float32)
        emb = matmul_ready(self.dropout(self.embedding(y_prev)))  # (B, E)
        return self.step_embedded(emb, self.input_gates(emb, memory), state, memory)

    def step_embedded(self, emb: Tensor, pre: Tensor, state: State, memory: Memory):
        """:meth:`step` from the embedding ``(B, E)`` and its :meth:`input_gates` ``(B, 4H)``."""
        raise NotImplementedError

    def readout(self, out: Tensor) -> Tensor:
        """Readout input ``(..., R)`` -> features ``(..., D)`` for the generator."""
        return self.dropout(out)

    def forward_parallel(self, tgt_in: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def forward(
        self, tgt_in: Tensor, memory: Memory, teacher_forcing: float = 1.0, generator: nn.Module | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Features ``(B, T, D)`` and attention weights ``(B, T, S)`` (None for ``none``).

        With ``teacher_forcing < 1`` each input is, with that probability, the reference token and
        otherwise the model's own previous argmax (which needs ``generator``).
        """
        if teacher_forcing >= 1.0 and self.parallel:
            return self.forward_parallel(tgt_in, memory)
        # columns that are padding in every row (train.pad_to_multiple adds up to 3) take no step:
        # the loop stops after the longest sentence and the outputs are zero-padded back to T
        width, steps = tgt_in.size(1), int((tgt_in != PAD).sum(1).max())  # one host sync per batch
        tgt_in = tgt_in[:, :steps]
        state = self.init_state(memory)
        if teacher_forcing >= 1.0:  # every input is known: embed and project them all at once
            emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
            pre = self.input_gates(emb, memory)  # (B, T, 4H)
            fusable = (
                self.fuse and self.layers == 1 and fused_loop_applies(memory, self.attention)
            )  # one layer, one head
            fused = self.fused_loop(emb, pre, state, memory) if fusable else None
            if fused is not None:
                features, attn = self.readout(fused[0]), fused[1]  # (B, T, D), (B, T, S)
            else:
                features, attn = self._step_loop(emb, pre, state, memory)
        else:
            features, attn = self._guided_loop(tgt_in, state, memory, teacher_forcing, generator)
        if steps < width:
            features = F.pad(features, (0, 0, 0, width - steps))
            attn = None if attn is None else F.pad(attn, (0, 0, 0, width - steps))
        return features, attn

    def fused_loop(self, emb: Tensor, pre: Tensor, state: State, memory: Memory) -> tuple[Tensor, Tensor] | None:
        """The teacher-forced loop as one autograd function (:mod:`seq2seq.model.recurrence`):
        readout input ``(B, T, R)`` and weights ``(B, T, S)``, or None where this wiring has none."""
        return None

    def _step_loop(self, emb: Tensor, pre: Tensor, state: State, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """The teacher-forced loop, one :meth:`step_embedded` per target position under autograd."""
        outs, weights = [], []
        # unbind, not [:, t]: each indexing op's backward would write a full (B, T, .) gradient
        for emb_t, pre_t in zip(emb.unbind(1), pre.unbind(1)):
            out, state, w = self.step_embedded(emb_t, pre_t, state, memory)
            outs.append(out)
            weights.append(w)
        return self._collect(outs, weights)

    def _guided_loop(self, tgt_in, state, memory, teacher_forcing: float, generator) -> tuple[Tensor, Tensor | None]:
        """Each input the reference token with probability ``teacher_forcing``, else the previous argmax."""
        outs, weights = [], []
        y = tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            if t > 0:
                with torch.no_grad():
                    guess = generator(self.readout(outs[-1])).argmax(-1)  # (B,)
                keep = torch.rand(guess.shape, device=guess.device) < teacher_forcing
                y = torch.where(keep, tgt_in[:, t], guess)
            out, state, w = self.step(y, state, memory)
            outs.append(out)
            weights.append(w)
        return self._collect(outs, weights)

    def _collect(self, outs: list[Tensor], weights: list[Tensor | None]) -> tuple[Tensor, Tensor | None]:
        features = self.readout(torch.stack(outs, dim=1))  # (B, T, D): one readout after the loop
        return features, None if weights[0] is None else torch.stack(weights, dim=1)  # (B, T, S)


class ContextDecoder(Decoder):
    """The wirings whose LSTM reads a context vector ``c`` beside ``y_{t-1}`` (none, Bahdanau).

    Their readout is a deep output layer (Bahdanau et al. 2015, A.2.2, with tanh in place of
    maxout): features ``= tanh(W_o [s_t; c; y_{t-1}])``.
    """

    def __init__(
        self, vocab_size: int, memory_size: int, feature_size: int, cfg: ModelConfig, att: AttentionConfig | None
    ):
        super().__init__(vocab_size, memory_size, feature_size, cfg)
        if att is not None:  # built before the readout: the initial weights draw in this order
            self.attention = build_attention(att.score, cfg.decoder_size, memory_size, att.size, att.heads)
        self.readout_layer = nn.Linear(cfg.decoder_size + memory_size + cfg.embedding_size, feature_size)

    def rnn_input_size(self, embedding_size: int) -> int:
        return embedding_size + self.memory_size

    def readout(self, out: Tensor) -> Tensor:
        return self.dropout(torch.tanh(self.readout_layer(out)))


class PlainDecoder(ContextDecoder):
    """``attention=none``: Cho et al. (2014)'s RNNencdec, the fair no-attention baseline.

    The fixed encoder summary ``c`` initialises the decoder and is fed at every step:
    ``s_t = LSTM([y_{t-1}; c], s_{t-1})``, readout from ``[s_t; c; y_{t-1}]``.
    """

    parallel = True

    def prepare(self, memory: Memory) -> Memory:
        memory = super().prepare(memory)
        summary_weight = matmul_ready(self.rnn.weight_ih_l0[:, self.embedding_size :])  # (4H, K)
        memory.extra_gates = F.linear(memory.summary, summary_weight)  # the same at every step
        return memory

    def step_embedded(self, emb, pre, state, memory):
        h, c = self.rnn_step(pre + memory.extra_gates, state, memory)
        return torch.cat([h[-1], memory.summary, emb], -1), State(h, c), None

    def forward_parallel(self, tgt_in, memory):
        emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        summary = memory.summary.unsqueeze(1).expand(-1, tgt_in.size(1), -1)  # (B, T, K)
        state = self.init_state(memory)
        s, _ = self.rnn(torch.cat([emb, summary], -1), (state.h, state.c))  # (B, T, H): one fused call
        return self.readout(torch.cat([s, summary, emb], -1)), None


class BahdanauDecoder(ContextDecoder):
    """Bahdanau et al. (2015): attend with the previous state, then update.

    ``c_t = attn(s_{t-1}, H)``; ``s_t = LSTM([y_{t-1}; c_t], s_{t-1})``; readout from
    ``[s_t; c_t; y_{t-1}]`` (their Eq. 4 / A.2.2, with tanh in place of maxout).
    """

    def prepare(self, memory: Memory) -> Memory:
        memory = super().prepare(memory)
        memory.joint_weight = joint_weight(self.rnn, self.embedding_size)  # (4H, K + H)
        return memory

    def fused_loop(self, emb, pre, state, memory):
        states, contexts, weights = bahdanau_loop(pre, memory, state.h[0], state.c[0], self.attention)
        return torch.cat([states, contexts, emb], -1), weights

    def step_embedded(self, emb, pre, state, memory):
        context, weights = self.attention(
            state.h[-1], memory.states, memory.states, memory.mask, memory.keys_proj, memory.values_proj
        )
        h, c = self.rnn_step(pre, state, memory, context)  # context (B, K)
        return torch.cat([h[-1], context, emb], -1), State(h, c), weights


class LuongDecoder(Decoder):
    """Luong et al. (2015): update, then attend with the new state.

    ``s_t = LSTM(y_{t-1} [; h~_{t-1}], s_{t-1})``; ``c_t = attn(s_t, H)``;
    ``h~_t = tanh(W_c [c_t; s_t])`` (their Eq. 5). With input feeding (their Sec. 3.3, the
    default) h~_{t-1} joins the LSTM input; without it the LSTM runs over the whole target side
    in one call and attention for all steps is one batched matmul.
    """

    def __init__(self, vocab_size, memory_size, feature_size, cfg: ModelConfig, att: AttentionConfig):
        self.input_feeding = att.input_feeding
        self.parallel = not att.input_feeding
        super().__init__(vocab_size, memory_size, feature_size, cfg)
        self.attention = build_attention(att.score, cfg.decoder_size, memory_size, att.size, att.heads)
        self.combine = nn.Linear(memory_size + cfg.decoder_size, feature_size, bias=False)  # W_c

    def rnn_input_size(self, embedding_size: int) -> int:
        return embedding_size + (self.feature_size if self.input_feeding else 0)

    def init_state(self, memory: Memory) -> State:
        state = super().init_state(memory)
        if self.input_feeding:
            state.feed = memory.summary.new_zeros(memory.summary.size(0), self.feature_size)
        return state

    def prepare(self, memory: Memory) -> Memory:
        memory = super().prepare(memory)
        if self.input_feeding:
            memory.joint_weight = joint_weight(self.rnn, self.embedding_size)  # (4H, D + H)
        return memory

    def fused_loop(self, emb, pre, state, memory):
        if not self.input_feeding:  # without it, forward_parallel serves
            return None
        steps, batch = pre.size(1), pre.size(0)
        drop = self.dropout.mask((steps, batch, self.feature_size), pre.dtype)  # on each h~ fed back
        return luong_feed_loop(pre, memory, state.h[0], state.c[0], self.combine.weight, drop, self.attention)

    def step_embedded(self, emb, pre, state, memory):
        h, c = self.rnn_step(pre, state, memory, state.feed)  # feed is None without input feeding
        context, weights = self.attention(
            h[-1], memory.states, memory.states, memory.mask, memory.keys_proj, memory.values_proj
        )
        out = torch.tanh(self.combine(torch.cat([context, h[-1]], -1)))  # h~_t (B, D)
        return out, State(h, c, self.dropout(out) if self.input_feeding else None), weights

    def forward_parallel(self, tgt_in, memory):
        emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        state = self.init_state(memory)
        s, _ = self.rnn(emb, (state.h, state.c))  # (B, T, H): one fused call
        context, weights = self.attention(
            s, memory.states, memory.states, memory.mask, memory.keys_proj, memory.values_proj
        )
        out = torch.tanh(self.combine(torch.cat([context, s], -1)))  # (B, T, D)
        return self.readout(out), weights
