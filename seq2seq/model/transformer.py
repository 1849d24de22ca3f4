"""The Transformer encoder-decoder (``model=transformer``), on the LSTM models' decoding contract.

    src (B, S) ─► embed (x sqrt(d)) + positions ─► N x [self-attention, feed-forward] ─► memory (B, S, d)
    tgt_in (B, T) ─► embed + positions ─► N x [causal self-attention, attention over the memory,
                                             feed-forward] ─► features (B, T, d) ─► generator ─► logits (B, T, V)

Search, the Translator, ``make eval`` and the length study drive it as they drive the LSTMs:
:meth:`Transformer.encode` runs the encoder once and prepares every decoder layer's
cross-attention keys and values (:class:`TransformerMemory`); :meth:`Transformer.init_state`
is an empty key/value cache (:class:`Cache`); :meth:`Transformer.step_logits` decodes one position
from the cache and returns the **last decoder layer's encoder-decoder attention, mean over its
heads**, as the LSTM returns its one attention. :func:`recording` keeps every attention module's
scores and weights per head (``encoder.0.self``, ``decoder.2.cross``, ...) for the pictures.

With a joint vocabulary (``data.vocab.joint``) and ``model.share_embeddings``, source, target and
output layer share one table over SentencePiece's pieces (Press & Wolf 2017; Vaswani et al. 2017,
Sec. 3.4); each side's vocabulary indexes its own rows of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import TransformerConfig
from seq2seq.data.vocab import PAD
from seq2seq.model.layers import AbsolutePositions, DecoderLayer, EncoderLayer, MultiHeadAttention, RelativeBias, Rotary
from seq2seq.model.lstm import Dropout


@dataclass
class TransformerMemory:
    """What the decoder reads from the encoder; every tensor has the batch first."""

    states: Tensor  # (B, S, d): the encoder's output
    mask: Tensor  # (B, S), True at real source positions
    cross: list[tuple[Tensor, Tensor]]  # per decoder layer: W_K, W_V of the states (B, N, S, h), once per batch

    def select(self, index: Tensor) -> TransformerMemory:
        """Rows ``index`` of the batch (beam search expands and reorders with this)."""
        cross = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross]
        return TransformerMemory(self.states.index_select(0, index), self.mask.index_select(0, index), cross)


@dataclass
class Cache:
    """The decoder's state between steps: each layer's self-attention keys and values ``(B, N, t, h)``."""

    layers: list[tuple[Tensor, Tensor]]
    length: int = 0  # positions decoded so far: the next one's position

    def select(self, index: Tensor) -> Cache:
        return Cache([(k.index_select(0, index), v.index_select(0, index)) for k, v in self.layers], self.length)


class Embedding(nn.Module):
    """Token embeddings scaled by ``sqrt(d)`` (Vaswani Sec. 3.4); ``rows`` maps a side's ids into a shared table."""

    def __init__(self, table: nn.Embedding, rows: Tensor | None, d_model: int):
        super().__init__()
        self.table, self.scale = table, math.sqrt(d_model)
        self.register_buffer("rows", rows, persistent=False)
        self._rows_of: tuple[tuple, Tensor] | None = None  # (the table's identity and version, its rows)

    @property
    def weight(self) -> Tensor:
        """This side's rows of the table ``(V, d)``: the output layer's weight when tied.

        Outside autograd (decoding, validation) the rows are gathered once per version of the table, not
        once per decoded position: the copy is as large as the output layer."""
        table = self.table.weight
        if self.rows is None:
            return table
        if torch.is_grad_enabled():
            return table.index_select(0, self.rows)
        key = (table.data_ptr(), table._version, table.dtype, table.device, self.rows.data_ptr())
        if self._rows_of is None or self._rows_of[0] != key:
            self._rows_of = (key, table.index_select(0, self.rows))
        return self._rows_of[1]

    def forward(self, ids: Tensor) -> Tensor:
        return self.table(ids if self.rows is None else self.rows[ids]) * self.scale


class TiedGenerator(nn.Module):
    """The output layer, ``logits = x E_tgt^T + b``, its weight the target embedding's (Press & Wolf 2017)."""

    def __init__(self, embedding: Embedding, vocab_size: int):
        super().__init__()
        self.embedding = embedding
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    @property
    def weight(self) -> Tensor:
        return self.embedding.weight

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class Stack(nn.Module):
    """What the encoder and decoder share: embedding, positions (absolute, relative or rotary), layers, final norm."""

    def __init__(self, embedding: Embedding, cfg: TransformerConfig, layers: int, decoder: bool):
        super().__init__()
        d = cfg.d_model
        self.embedding, self.pre = embedding, cfg.norm == "pre"
        absolute = cfg.positions in ("sinusoidal", "learned")
        self.positions = AbsolutePositions(cfg.positions, d, cfg.max_positions) if absolute else None
        self.relative = (
            RelativeBias(cfg.heads, cfg.relative_buckets, cfg.max_positions, bidirectional=not decoder)
            if cfg.positions == "relative"
            else None
        )
        rotary = Rotary(d // cfg.heads) if cfg.positions == "rope" else None
        kind = DecoderLayer if decoder else EncoderLayer
        args = (d, cfg.heads, cfg.ff_size, cfg.dropout, cfg.attention_dropout, self.pre, rotary)
        self.layers = nn.ModuleList(kind(*args) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d) if self.pre else nn.Identity()  # pre-norm leaves the last sum unnormalised
        self.dropout = Dropout(cfg.dropout)

    def embed(self, ids: Tensor, positions: Tensor) -> Tensor:
        """``ids (B, L)`` at ``positions (L,)`` -> ``(B, L, d)``."""
        x = self.embedding(ids)
        if self.positions is not None:
            x = x + self.positions(positions).to(x.dtype)
        return self.dropout(x)

    def bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor | None:
        return None if self.relative is None else self.relative(q_positions, k_positions)


class TransformerEncoder(Stack):
    def forward(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor]:
        """``src (B, S)`` -> states ``(B, S, d)`` and the mask ``(B, S)`` of real positions."""
        positions = torch.arange(src.size(1), device=src.device)
        mask = positions[None, :] < src_lens.to(src.device)[:, None]  # (B, S)
        x, bias = self.embed(src, positions), self.bias(positions, positions)
        for layer in self.layers:
            x = layer(x, mask[:, None, None, :], bias, positions)
        return self.final_norm(x), mask


class TransformerDecoder(Stack):
    def prepare(self, states: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Every layer's cross-attention keys and values of the encoder states, ``(B, N, S, h)`` each."""
        return [
            (lay.cross_attention.prepare(states), lay.cross_attention.prepare_values(states)) for lay in self.layers
        ]

    def forward(
        self, tgt: Tensor, memory: TransformerMemory, cache: Cache | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Cache, Tensor | None]:
        """``tgt (B, T)`` from position ``cache.length`` on: features ``(B, T, d)``, the grown cache, and the
        last layer's cross-attention weights ``(B, N, T, S)`` when asked for."""
        start = 0 if cache is None else cache.length
        positions = torch.arange(start, start + tgt.size(1), device=tgt.device)
        keys = torch.arange(start + tgt.size(1), device=tgt.device)
        causal = keys[None, :] <= positions[:, None]  # (T, t + T): a position sees itself and the past
        x, bias = self.embed(tgt, positions), self.bias(positions, keys)
        src_mask = memory.mask[:, None, None, :]  # (B, 1, 1, S)
        grown, weights = [], None
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            past = None if cache is None else cache.layers[i]
            x, kv, w = layer(x, memory.cross[i], src_mask, causal, bias, positions, past, need_weights and last)
            grown.append(kv)
            weights = w if last else weights
        return self.final_norm(x), Cache(grown, start + tgt.size(1)), weights


class Transformer(nn.Module):
    """The encoder-decoder with the LSTM models' interface: ``encode``, ``init_state``, ``step_logits``, ``features``."""

    has_attention = True

    def __init__(self, src_vocab: int, tgt_vocab: int, cfg: TransformerConfig, shared: tuple[list, list] | None = None):
        super().__init__()
        self.config = cfg
        d = cfg.d_model
        if shared is not None:  # one table over SentencePiece's ids; each side reads its own rows
            table = nn.Embedding(max(max(shared[0]), max(shared[1])) + 1, d, padding_idx=PAD)
            src_rows, tgt_rows = (torch.tensor(ids, dtype=torch.long) for ids in shared)
            src_embedding, tgt_embedding = Embedding(table, src_rows, d), Embedding(table, tgt_rows, d)
        else:
            src_embedding = Embedding(nn.Embedding(src_vocab, d, padding_idx=PAD), None, d)
            tgt_embedding = Embedding(nn.Embedding(tgt_vocab, d, padding_idx=PAD), None, d)
        self.encoder = TransformerEncoder(src_embedding, cfg, cfg.encoder_layers, decoder=False)
        self.decoder = TransformerDecoder(tgt_embedding, cfg, cfg.decoder_layers, decoder=True)
        self.generator = TiedGenerator(tgt_embedding, tgt_vocab)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier-uniform matrices (as the reference implementation), embeddings N(0, d^-1/2) (scaled by sqrt(d))."""
        for name, p in self.named_parameters():
            if p.dim() > 1 and "embedding" not in name and "relative" not in name:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, nn.Embedding) and module.embedding_dim == self.config.d_model:
                nn.init.normal_(module.weight, std=self.config.d_model**-0.5)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()

    @property
    def heads(self) -> int:
        return self.config.heads

    @property
    def max_output_length(self) -> int | None:
        """The most positions the decoder can write: a learned table's length (search stops there), else None."""
        return self.config.max_positions if self.config.positions == "learned" else None

    @contextmanager
    def recording_heads(self) -> Iterator[list[Tensor]]:
        """Within the block, each call of the last decoder layer's encoder-decoder attention (the one
        decoding reports) appends its heads' weights ``(B, N, T, S)`` to the list yielded."""
        attention = self.decoder.layers[-1].cross_attention
        calls: list[Tensor] = []
        attention.record, attention.record_scores = calls, False
        try:
            yield calls
        finally:
            attention.record, attention.record_scores = None, True

    def attention_modules(self) -> dict[str, MultiHeadAttention]:
        """Every attention module by name: ``encoder.0.self``, ``decoder.0.self``, ``decoder.0.cross``, ..."""
        out = {}
        for side in ("encoder", "decoder"):
            for i, layer in enumerate(getattr(self, side).layers):
                out[f"{side}.{i}.self"] = layer.self_attention
                if side == "decoder":
                    out[f"{side}.{i}.cross"] = layer.cross_attention
        return out

    def encode(self, src: Tensor, src_lens: Tensor) -> TransformerMemory:
        states, mask = self.encoder(src, src_lens)
        return TransformerMemory(states, mask, self.decoder.prepare(states))

    def init_state(self, memory: TransformerMemory) -> Cache:
        return Cache([], 0)

    def features(
        self, src: Tensor, src_lens: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """The decoder's output ``(B, T, d)`` for the whole of ``tgt_in`` at once (training's loss starts here),
        and outside training the last layer's cross-attention, mean over heads, ``(B, T, S)`` (for its
        statistics); training asks for no weights, so its attention runs fused (on a GPU, or without
        attention dropout)."""
        features, _, weights = self.decoder(tgt_in, self.encode(src, src_lens), need_weights=not self.training)
        return features, None if weights is None else weights.mean(1)

    def forward(
        self, src: Tensor, src_lens: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Logits ``(B, T, V)`` and the last layer's cross-attention, mean over heads, ``(B, T, S)``."""
        features, _, weights = self.decoder(tgt_in, self.encode(src, src_lens), need_weights=True)
        return self.generator(features), weights.mean(1)

    def step_logits(self, y_prev: Tensor, state: Cache, memory: TransformerMemory) -> tuple[Tensor, Cache, Tensor]:
        """One position: log-probabilities ``(B, V)``, the grown cache, and the last layer's
        cross-attention weights, mean over heads, ``(B, S)``."""
        cache = state if state.layers else None
        features, cache, weights = self.decoder(y_prev[:, None], memory, cache, need_weights=True)
        logits = self.generator(features[:, 0])
        return F.log_softmax(logits.float(), dim=-1), cache, weights[:, :, 0].mean(1)


@contextmanager
def recording(model: Transformer) -> Iterator[dict[str, list[dict[str, Tensor]]]]:
    """Within the block every attention module appends ``{"scores", "weights"}`` ``(B, N, T, S)`` of each call
    to its list in the dict yielded, keyed as :meth:`Transformer.attention_modules` names them."""
    modules = model.attention_modules()
    calls: dict[str, list[dict[str, Tensor]]] = {name: [] for name in modules}
    for name, module in modules.items():
        module.record = calls[name]
    try:
        yield calls
    finally:
        for module in modules.values():
            module.record = None


def describe(cfg: TransformerConfig) -> str:
    """``transformer (3+3 layers, d 256, 4 heads, sinusoidal positions, pre-norm)``."""
    return (
        f"transformer ({cfg.encoder_layers}+{cfg.decoder_layers} layers, d {cfg.d_model}, {cfg.heads} heads, "
        f"{cfg.positions} positions, {cfg.norm}-norm)"
    )
