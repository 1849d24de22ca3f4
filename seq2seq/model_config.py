"""The model sections of the configuration: ``model`` (one dataclass per family) and ``attention``.

``model=lstm`` (:class:`ModelConfig`, the default) is the LSTM encoder-decoder, whose decoder wiring
and score ``attention`` picks (:class:`AttentionConfig`); ``model=transformer``
(:class:`TransformerConfig`) attends with scaled dot products in every layer and has no use for the
``attention`` section. :mod:`seq2seq.config` composes these with the data and training sections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from seq2seq.errors import ConfigError


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raise :class:`ConfigError` naming ``key=value`` and what was ``expected`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is out of range: expected {expected}")


def nearest_divisors(size: int, heads: int) -> str:
    """The divisors of ``size`` next below and above ``heads``: ``"4 and 8"`` (the head counts that fit)."""
    valid = [n for n in range(1, size + 1) if size % n == 0]
    below = [n for n in valid if n < heads][-1:]
    above = [n for n in valid if n > heads][:1]
    return " and ".join(map(str, below + above))


@dataclass
class ModelConfig:
    """``model=lstm``: the LSTM encoder-decoder; ``attention`` picks its decoder wiring and score."""

    family: str = "lstm"
    embedding_size: int = 256
    encoder_size: int = 192  # per direction
    encoder_layers: int = 1
    bidirectional: bool = True
    decoder_size: int = 384
    decoder_layers: int = 1
    dropout: float = 0.3
    tie_embeddings: bool = False  # share the target embedding with the output layer

    def check(self) -> None:
        for key in ("embedding_size", "encoder_size", "encoder_layers", "decoder_size", "decoder_layers"):
            require(getattr(self, key) >= 1, f"model.{key}", getattr(self, key), "at least 1")
        require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "in [0, 1)")


POSITIONS = ("sinusoidal", "learned", "relative", "rope")


@dataclass
class TransformerConfig:
    """``model=transformer``: Vaswani et al. (2017) with a choice of position encoding.

    Sizes: d 256, 3 + 3 layers, 4 heads, feed-forward 1024 give 7.6M parameters with the joint
    8k vocabulary, next to the default LSTM's 7.4M, so the two families compare at equal size;
    docs/results.md ("Other shapes near the LSTM's size") measures the alternatives, and 2 + 2
    layers as the better choice for a few minutes on 2 cores.
    """

    family: str = "transformer"
    d_model: int = 256
    heads: int = 4
    ff_size: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1  # after attention, feed-forward and embeddings
    attention_dropout: float = 0.1  # on the attention weights (training only)
    norm: str = "pre"  # pre: x + f(LN(x)) (stable without long warmup) | post: LN(x + f(x)) (the paper's)
    positions: str = "sinusoidal"  # sinusoidal | learned | relative (T5's buckets) | rope (Su et al. 2021)
    max_positions: int = 256  # learned: the table's length (longer inputs are refused); relative: the farthest bucket
    relative_buckets: int = 32  # relative: T5's log-spaced offset buckets per direction pair
    share_embeddings: bool = True  # joint vocabulary: one table for source, target and output layer

    def check(self) -> None:
        for key in ("d_model", "heads", "ff_size", "encoder_layers", "decoder_layers", "max_positions"):
            require(getattr(self, key) >= 1, f"model.{key}", getattr(self, key), "at least 1")
        for key in ("dropout", "attention_dropout"):
            require(0.0 <= getattr(self, key) < 1.0, f"model.{key}", getattr(self, key), "in [0, 1)")
        require(self.norm in ("pre", "post"), "model.norm", self.norm, "pre or post")
        require(self.positions in POSITIONS, "model.positions", self.positions, ", ".join(POSITIONS))
        require(self.relative_buckets >= 2, "model.relative_buckets", self.relative_buckets, "at least 2")
        if self.d_model % self.heads:
            raise ConfigError(
                f"model.heads={self.heads} does not divide model.d_model={self.d_model}; "
                f"the nearest valid head counts are {nearest_divisors(self.d_model, self.heads)}"
            )
        if self.positions == "rope" and (self.d_model // self.heads) % 2:
            raise ConfigError(
                f"model.positions=rope rotates pairs of numbers, so a head's size (model.d_model / model.heads = "
                f"{self.d_model // self.heads}) must be even"
            )


ATTENTION_TYPES = ("none", "luong", "bahdanau")
SCORES = ("dot", "scaled_dot", "general", "concat")


@dataclass
class AttentionConfig:
    type: str = "bahdanau"  # none | luong | bahdanau: how the decoder is wired
    score: str | None = "concat"  # dot | scaled_dot | general | concat
    size: int = 256  # hidden size of the concat (additive) score
    input_feeding: bool = True  # luong only: feed h~_{t-1} into the next LSTM step
    heads: int = 1  # attention heads (RNMT+'s multi-head attention); 1: the single attention of the papers

    def check(self) -> None:
        require(self.type in ATTENTION_TYPES, "attention.type", self.type, f"one of {', '.join(ATTENTION_TYPES)}")
        if self.type != "none":
            require(self.score in SCORES, "attention.score", self.score, f"one of {', '.join(SCORES)}")
        require(self.size >= 1, "attention.size", self.size, "at least 1")
        require(self.heads >= 1, "attention.heads", self.heads, "at least 1")
        if self.type == "none" and self.heads != 1:
            raise ConfigError(f"attention.heads={self.heads} with attention=none: the baseline has no attention")

    def head_sizes(self, query_size: int, key_size: int) -> dict[str, int]:
        """The sizes ``attention.heads`` splits, each named as the error names it: each must be a
        multiple of the head count.

        The scores split what they compare (the query and keys for dot and scaled dot, the query
        and ``W k`` for general, ``W_q q + W_k k`` for concat); the values (encoder states) split
        into each head's share of the context.
        """
        if self.score == "concat":
            compared = {f"attention.size={self.size}": self.size}
        else:
            compared = {f"the query size {query_size} (model.decoder_size)": query_size}
        return {**compared, f"the encoder output size {key_size} (keys and values)": key_size}

    def check_heads(self, query_size: int, key_size: int) -> None:
        """One line naming the sizes and the nearest valid head counts where ``heads`` does not divide them."""
        if self.type == "none" or self.heads == 1:
            return
        sizes = self.head_sizes(query_size, key_size)
        if all(size % self.heads == 0 for size in sizes.values()):
            return
        raise ConfigError(
            f"attention.heads={self.heads} does not divide {' and '.join(sizes)}; "
            f"the nearest valid head counts are {nearest_divisors(math.gcd(*sizes.values()), self.heads)}"
        )
