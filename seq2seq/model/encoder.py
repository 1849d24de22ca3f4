"""The encoder: a (bi)LSTM over the source, and the memory the decoder reads from it.

    src (B, S) ──► embedding ──► bi-LSTM ──► states H (B, S, K), summary (B, K)

K is the encoder output size (2 x encoder_size when bidirectional). Padding is exact: states are
zero at padded positions and the summary is each sentence's forward last and backward first
state of the top layer, as with packed sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.config import ModelConfig
from seq2seq.data.vocab import PAD
from seq2seq.model.lstm import Dropout, unpacked_lstm


@dataclass
class Memory:
    """What the decoder reads from the encoder; every tensor is batch-first."""

    states: Tensor  # (B, S, K): keys and values of attention
    mask: Tensor  # (B, S), True at real source positions
    summary: Tensor  # (B, K): [h_fwd_last; h_bwd_first] of the top encoder layer
    # Computed once per batch by Decoder.prepare, so that no decoder step repeats them:
    keys_proj: Tensor | None = None  # attention.prepare(states)
    values_proj: Tensor | None = None  # attention.prepare_values(states): states itself with one head
    extra_gates: Tensor | None = None  # (B, 4H): a constant extra LSTM input's share of the gates (none)
    joint_weight: Tensor | None = None  # the first LSTM layer's input weight past the embedding's columns
    # beside its recurrent weight (4H, I - E + H), lstm.joint_weight (Bahdanau, Luong input feeding)
    embed_weight: Tensor | None = None  # ... and its input weight's embedding columns (4H, E)
    gate_bias: Tensor | None = None  # its two biases summed (4H,)

    def select(self, index: Tensor) -> Memory:
        """Rows ``index`` of the batch (beam search expands and reorders with this)."""

        def rows(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, index)

        states = self.states.index_select(0, index)
        one_head = self.values_proj is self.states  # the values are the states: select them once
        return Memory(
            states,
            self.mask.index_select(0, index),
            self.summary.index_select(0, index),
            rows(self.keys_proj),
            states if one_head else rows(self.values_proj),
            rows(self.extra_gates),
            self.joint_weight,  # weights, the same for every row
            self.embed_weight,
            self.gate_bias,
        )


class Encoder(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size, padding_idx=PAD)
        self.dropout = Dropout(cfg.dropout)
        self.rnn = nn.LSTM(
            cfg.embedding_size,
            cfg.encoder_size,
            cfg.encoder_layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0,
        )
        self.output_size = cfg.encoder_size * (2 if cfg.bidirectional else 1)

    def forward(self, src: Tensor, src_lens: Tensor) -> Memory:
        """``src (B, S)`` padded ids, ``src_lens (B,)`` -> :class:`Memory` (without ``keys_proj``)."""
        emb = self.dropout(self.embedding(src))  # (B, S, E)
        lens = src_lens.to(src.device)
        mask = torch.arange(src.size(1), device=src.device)[None, :] < lens[:, None]
        if src.device.type == "cpu":
            states, summary = unpacked_lstm(self.rnn, self.dropout, emb, lens, mask)
        else:
            states, summary = self._run_packed(emb, src_lens)
        return Memory(states, mask, summary)

    def _run_packed(self, emb: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor]:
        """``self.rnn`` over packed sequences: the plain computation (and cuDNN's fast one); CPUs run :func:`unpacked_lstm`."""
        packed = pack_padded_sequence(emb, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.size(1))  # (B, S, K)
        dirs = 2 if self.rnn.bidirectional else 1
        top = h_n.view(self.rnn.num_layers, dirs, emb.size(0), self.rnn.hidden_size)[-1]  # (dirs, B, H_enc)
        return states, torch.cat(list(top), dim=-1)  # summary (B, K): forward's last, backward's first
