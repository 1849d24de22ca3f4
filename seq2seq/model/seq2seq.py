"""The encoder-decoder: :class:`Seq2Seq`, an :class:`~seq2seq.model.encoder.Encoder`, one decoder wiring, a generator.

src ──► Encoder ──► memory ──► Decoder (none | bahdanau | luong) ──► features (B, T, D)
    ──► generator (Linear D -> V) ──► logits (B, T, V)
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import AttentionConfig, Config, ModelConfig, TransformerConfig
from seq2seq.data.vocab import Vocab
from seq2seq.model.attention import recording_heads
from seq2seq.model.decoder import BahdanauDecoder, Decoder, LuongDecoder, PlainDecoder, State
from seq2seq.model.encoder import Encoder, Memory
from seq2seq.model.transformer import Transformer
from seq2seq.model.transformer import describe as describe_transformer


class Seq2Seq(nn.Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, cfg: ModelConfig, att: AttentionConfig):
        super().__init__()
        self.encoder = Encoder(src_vocab, cfg)
        feature_size = cfg.embedding_size if cfg.tie_embeddings else cfg.decoder_size
        memory = self.encoder.output_size
        if att.type == "none":
            self.decoder: Decoder = PlainDecoder(tgt_vocab, memory, feature_size, cfg, None)
        elif att.type == "bahdanau":
            self.decoder = BahdanauDecoder(tgt_vocab, memory, feature_size, cfg, att)
        elif att.type == "luong":
            self.decoder = LuongDecoder(tgt_vocab, memory, feature_size, cfg, att)
        else:
            raise ValueError(f"unknown attention type {att.type!r}; choose none, luong or bahdanau")
        self.generator = nn.Linear(feature_size, tgt_vocab)
        if cfg.tie_embeddings:  # Press & Wolf (2017): share the target embedding with the output layer
            self.generator.weight = self.decoder.embedding.weight

    @property
    def has_attention(self) -> bool:
        return self.decoder.attention is not None

    max_output_length: int | None = None  # no position table: the search's own limit alone (Transformer: its table)

    @property
    def heads(self) -> int:
        """The heads of the attention the decoder reports (1 for one head and for ``attention=none``)."""
        return self.decoder.attention.heads if self.decoder.attention is not None else 1

    def recording_heads(self) -> AbstractContextManager[list[Tensor]]:
        """Within the block, each call of the attention appends its heads' weights ``(B, N, T, S)``
        (:func:`~seq2seq.model.attention.recording_heads`); nothing with one head."""
        return recording_heads(self.decoder.attention) if self.heads > 1 else nullcontext([])

    def encode(self, src: Tensor, src_lens: Tensor) -> Memory:
        return self.decoder.prepare(self.encoder(src, src_lens))

    def init_state(self, memory: Memory) -> State:
        """The decoder's state before the first step (from the encoder summary, through the bridge)."""
        return self.decoder.init_state(memory)

    def forward(
        self, src: Tensor, src_lens: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """Logits ``(B, T, V)`` for ``tgt_in (B, T)`` (BOS + reference), and attention ``(B, T, S)``."""
        features, attn = self.features(src, src_lens, tgt_in, teacher_forcing)
        return self.generator(features), attn

    def features(
        self, src: Tensor, src_lens: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> tuple[Tensor, Tensor | None]:
        """What the generator reads, ``(B, T, D)``, and attention ``(B, T, S)``; training's loss starts here."""
        memory = self.encode(src, src_lens)
        return self.decoder(tgt_in, memory, teacher_forcing, self.generator)

    def step_logits(self, y_prev: Tensor, state: State, memory: Memory) -> tuple[Tensor, State, Tensor | None]:
        """One decoding step: log-probabilities ``(B, V)``, new state, attention ``(B, S)``."""
        out, state, weights = self.decoder.step(y_prev, state, memory)
        logits = self.generator(self.decoder.readout(out))
        return F.log_softmax(logits.float(), dim=-1), state, weights


def build_model(
    src_vocab: int,
    tgt_vocab: int,
    cfg: ModelConfig | TransformerConfig,
    att: AttentionConfig,
    vocab: Vocab | None = None,
) -> Seq2Seq | Transformer:
    """The model family ``cfg`` names (``model=lstm`` or ``model=transformer``), for vocabularies of these sizes.

    ``vocab`` lets a Transformer share one embedding table between the sides of a joint vocabulary.
    """
    if isinstance(cfg, TransformerConfig):
        shared = None
        if cfg.share_embeddings and vocab is not None and vocab.joint:
            shared = (vocab.src.to_spm, vocab.tgt.to_spm)
        return Transformer(src_vocab, tgt_vocab, cfg, shared)
    return Seq2Seq(src_vocab, tgt_vocab, cfg, att)


def describe(config: Config) -> str:
    """The model in a few words, for logs and pages: ``attention=bahdanau, 1 head``, ``attention=none``, or
    ``transformer (3+3 layers, d 256, 4 heads, sinusoidal positions, pre-norm)``."""
    if isinstance(config.model, TransformerConfig):
        return describe_transformer(config.model)
    att = config.attention
    if att.type == "none":
        return "attention=none"
    return f"attention={att.type}, {att.heads} head{'s' if att.heads > 1 else ''}"
