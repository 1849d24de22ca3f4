"""Long inputs built from real sentences: the length study's probe and its training regime.

Multi30k captions are short (test2016: 11 words on average, 30 at most), too short to show what
a fixed-size encoder summary cannot hold. Length-generalisation work (e.g. Varis & Bojar 2021)
makes longer inputs by joining consecutive sentences of a document; here:

- :func:`join_consecutive` joins k consecutive test sentences, and their references the same
  way, for ``python -m seq2seq.evaluate --concat K`` (k = 1 ... K) and the length study;
- :func:`long_examples` turns a fraction of the *training* pairs into concatenations of 2 ... K
  random training pairs (``data.long_examples``), so that a model has seen long inputs and a
  baseline that still fails on them fails through its bottleneck, not through unfamiliar lengths.

Both are deterministic: the first from the files alone, the second from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from seq2seq.errors import ConfigError, DataError

MAX_K = 16  # the longest concatenation either function builds


def join_consecutive(src: Sequence[str], refs: Sequence[str], k: int) -> tuple[list[str], list[str]]:
    """Sentences ``k*i ... k*i + k - 1`` joined with a space, on both sides; ``k = 1`` is the split itself.

    The last group is dropped when fewer than ``k`` sentences are left for it (1,000 sentences
    give 333 inputs at k = 3), so every input is made of exactly ``k`` sentences.
    """
    if len(src) != len(refs):
        raise DataError(f"{len(src)} sources but {len(refs)} references: they must be aligned")
    if not 1 <= k <= min(MAX_K, len(src)):
        raise ConfigError(f"k={k} is out of range: expected 1 to {min(MAX_K, len(src))} (sentences in the split)")
    groups = range(0, len(src) - k + 1, k)
    return [" ".join(src[i : i + k]) for i in groups], [" ".join(refs[i : i + k]) for i in groups]


@dataclass
class LongReport:
    total: int  # training pairs
    built: int  # concatenations kept
    too_long: int  # concatenations over max_len, replaced by their first pair
    max_k: int

    def __str__(self) -> str:
        return (
            f"long examples: {self.built} of {self.total} training pairs joined with 1-{self.max_k - 1} random others "
            f"({self.too_long} joins over data.filter.max_len kept as single pairs)"
        )


def long_examples(
    src: Sequence[str], tgt: Sequence[str], fraction: float, max_k: int, seed: int, max_len: int
) -> tuple[list[str], list[str], LongReport]:
    """Training pairs where each, with probability ``fraction``, is joined with ``k - 1`` random others.

    ``k`` is uniform in 2 ... ``max_k``; the others are drawn without replacement from the whole
    split (excluding the pair itself), sources and targets joined in the same order, so the
    pairs stay aligned. A join over ``max_len`` words on either side (the length filter) keeps
    the pair on its own; if that happens to most joins of ``max_k`` sentences, ``max_k`` is
    pointless with this ``max_len`` and the call fails with the count.
    """
    n = len(src)
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"data.long_examples.fraction={fraction!r} is out of range: expected in [0, 1]")
    if not 2 <= max_k <= min(MAX_K, n):
        raise ConfigError(
            f"data.long_examples.max_k={max_k!r} is out of range: expected 2 to {min(MAX_K, n)} (sentences per example)"
        )
    rng = random.Random(seed)
    out_src, out_tgt = list(src), list(tgt)
    built = too_long = longest_built = longest_dropped = 0
    for i in range(n):
        if rng.random() >= fraction:
            continue
        k = rng.randint(2, max_k)
        others = rng.sample(range(n - 1), k - 1)
        rows = [i, *(j + (j >= i) for j in others)]  # skip i itself
        joined_src, joined_tgt = " ".join(src[r] for r in rows), " ".join(tgt[r] for r in rows)
        if max(len(joined_src.split()), len(joined_tgt.split())) > max_len:
            too_long += 1
            longest_dropped += k == max_k
            continue
        longest_built += k == max_k
        out_src[i], out_tgt[i] = joined_src, joined_tgt
        built += 1
    if longest_dropped > longest_built:
        raise DataError(
            f"data.long_examples.max_k={max_k} builds examples the length filter drops: {longest_dropped} of "
            f"{longest_dropped + longest_built} joins of {max_k} sentences are over data.filter.max_len={max_len} "
            "words; lower max_k or raise data.filter.max_len"
        )
    return out_src, out_tgt, LongReport(n, built, too_long, max_k)
