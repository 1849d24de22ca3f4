"""Attention as word alignment: the alignment error rate against gold links (Och & Ney 2003).

The model reads the gold target with teacher forcing; row ``t`` of its attention ``(T, S)`` is the
distribution it used to predict target piece ``t``. Pieces are mapped back to whitespace words:

    source word weight  = sum of its pieces' weights      (a word's share of the attention)
    target word weights = mean over its pieces' rows      (each piece's view counts equally)

and each target word is linked to its highest-weight source word, giving ``A``. With the gold
sure links ``S`` and possible links ``P`` (``S`` included), corpus-level

    AER = 1 - (|A n S| + |A n P|) / (|A| + |S|),   precision = |A n P| / |A|,   recall = |A n S| / |S|.

Gold files use the talp format: one line per sentence pair, 1-based ``i-j`` (sure) and ``ipj``
(possible), ``i`` a source word, ``j`` a target word.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seq2seq.data.batching import collate
from seq2seq.data.vocab import Vocab
from seq2seq.errors import DataError
from seq2seq.model import Seq2Seq

Link = tuple[int, int]  # (source word, target word), 1-based


@dataclass
class AlignmentCounts:
    """Corpus-level link counts; add sentences with ``+=``."""

    predicted: int = 0  # |A|
    sure: int = 0  # |S|
    hit_sure: int = 0  # |A n S|
    hit_possible: int = 0  # |A n P|

    def __iadd__(self, other: AlignmentCounts) -> AlignmentCounts:
        self.predicted += other.predicted
        self.sure += other.sure
        self.hit_sure += other.hit_sure
        self.hit_possible += other.hit_possible
        return self

    def scores(self) -> dict[str, float]:
        total = self.predicted + self.sure
        return {
            "aer": 1.0 - (self.hit_sure + self.hit_possible) / total if total else 0.0,
            "precision": self.hit_possible / self.predicted if self.predicted else 0.0,
            "recall": self.hit_sure / self.sure if self.sure else 0.0,
        }


def parse_talp(line: str) -> tuple[set[Link], set[Link]]:
    """A talp line -> (sure links, possible links); the possible set includes the sure ones."""
    sure, possible = set(), set()
    for item in line.split():
        sep = "-" if "-" in item else "p"
        i, j = item.split(sep)
        link = (int(i), int(j))
        possible.add(link)
        if sep == "-":
            sure.add(link)
    return sure, possible


def count_links(predicted: set[Link], sure: set[Link], possible: set[Link]) -> AlignmentCounts:
    return AlignmentCounts(len(predicted), len(sure), len(predicted & sure), len(predicted & (possible | sure)))


def encode_words(encode: Callable[[list[str]], list[list[int]]], words: Sequence[str]) -> tuple[list[int], list[int]]:
    """Subword ids of a sentence and, for each piece, the index of its word.

    Each word is encoded on its own: SentencePiece starts every word with a '▁' piece and no
    piece crosses a space, so this is the sentence's segmentation, and it stays correct when a
    piece maps to ``<unk>`` (whose text no longer shows the '▁').
    """
    ids, word_of = [], []
    for index, pieces in enumerate(encode(list(words))):
        ids += pieces
        word_of += [index] * len(pieces)
    return ids, word_of


def merge_attention(attention: Tensor, tgt_word_of: Sequence[int], src_word_of: Sequence[int]) -> Tensor:
    """Piece attention ``(T, S)`` -> word attention ``(T_words, S_words)``.

    Sums over a source word's pieces (columns), averages over a target word's pieces (rows).
    ``tgt_word_of (T,)`` and ``src_word_of (S,)`` give each piece's word index.
    """
    src_map = torch.zeros(len(src_word_of), max(src_word_of) + 1)  # (S, S_words): one-hot
    src_map[torch.arange(len(src_word_of)), torch.tensor(src_word_of)] = 1.0
    tgt_map = torch.zeros(max(tgt_word_of) + 1, len(tgt_word_of))  # (T_words, T): 1 / pieces per word
    tgt_map[torch.tensor(tgt_word_of), torch.arange(len(tgt_word_of))] = 1.0
    tgt_map = tgt_map / tgt_map.sum(1, keepdim=True)
    return tgt_map @ attention.float() @ src_map


def argmax_links(word_attention: Tensor) -> set[Link]:
    """Each target word ``j`` linked to its highest-weight source word ``i``: 1-based ``(i, j)``."""
    best = word_attention.argmax(dim=1).tolist()  # (T_words,)
    return {(i + 1, j + 1) for j, i in enumerate(best)}


def diagonal_links(n_src: int, n_tgt: int) -> set[Link]:
    """The attention-free baseline: target word ``j`` linked to the source word at the same relative position."""
    return {(min(n_src, math.floor((j - 0.5) * n_src / n_tgt) + 1), j) for j in range(1, n_tgt + 1)}


def diagonal_error_rate(
    src_words_lines: Sequence[Sequence[str]], tgt_words_lines: Sequence[Sequence[str]], gold_lines: Sequence[str]
) -> dict[str, float]:
    """AER, precision and recall of :func:`diagonal_links`: what attention must beat to count as alignment."""
    counts = AlignmentCounts()
    for s, t, gold in zip(src_words_lines, tgt_words_lines, gold_lines):
        if s and t:
            counts += count_links(diagonal_links(len(s), len(t)), *parse_talp(gold))
    return counts.scores()


@torch.inference_mode()
def alignment_error_rate(
    model: Seq2Seq,
    vocab: Vocab,
    src_words_lines: Sequence[Sequence[str]],
    tgt_words_lines: Sequence[Sequence[str]],
    gold_lines: Sequence[str],
    batch_size: int = 32,
) -> dict[str, Any]:
    """AER, precision and recall of the model's attention against talp gold lines (see the module doc).

    ``src_words_lines[k]`` / ``tgt_words_lines[k]`` are the whitespace words of pair ``k``. With
    multi-head attention the figures are those of the mean over heads, and ``"heads"`` lists each
    head's, ``"best_head"`` (1-based) the head of the lowest AER.
    """
    if not model.has_attention:
        raise ValueError("alignment_error_rate needs a model with attention (attention=luong or bahdanau)")
    model.eval()
    device = next(model.parameters()).device
    pairs = [(s, t, g) for s, t, g in zip(src_words_lines, tgt_words_lines, gold_lines) if s and t]
    counts = AlignmentCounts()
    heads = model.heads
    head_counts = [AlignmentCounts() for _ in range(heads if heads > 1 else 0)]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        src = [encode_words(vocab.encode_src, s) for s, _, _ in chunk]
        tgt = [encode_words(vocab.encode_tgt, t) for _, t, _ in chunk]
        batch = collate([ids for ids, _ in src], [ids for ids, _ in tgt]).to(device)
        recording = model.recording_heads() if head_counts else nullcontext([])
        with recording as calls:
            _, attention = model(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, S)
        every = torch.cat(calls, 2) if calls else None  # (B, N, T, S)
        for row, ((s_ids, s_word), (t_ids, t_word), (_, _, gold)) in enumerate(zip(src, tgt, chunk)):
            pieces = attention[row, : len(t_ids), : len(s_ids)].cpu()  # drop the EOS row and the EOS column
            links = argmax_links(merge_attention(pieces, t_word, s_word))
            counts += count_links(links, *parse_talp(gold))
            for h, head in enumerate(head_counts):
                pieces = every[row, h, : len(t_ids), : len(s_ids)].cpu()
                head += count_links(argmax_links(merge_attention(pieces, t_word, s_word)), *parse_talp(gold))
    result: dict[str, Any] = {**counts.scores(), "n_sentences": len(pairs)}
    if head_counts:
        result["heads"] = [c.scores() for c in head_counts]
        result["best_head"] = 1 + min(range(heads), key=lambda h: result["heads"][h]["aer"])
    return result


def read_gold(folder: Path, src: str, tgt: str) -> tuple[list[list[str]], list[list[str]], list[str]]:
    """``test.{src}.gz``, ``test.{tgt}.gz`` and ``{src}{tgt}.talp.gz`` of a gold-alignment folder."""

    def lines(name: str) -> list[str]:
        with gzip.open(folder / name, "rt", encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]

    src_lines, tgt_lines, gold = lines(f"test.{src}.gz"), lines(f"test.{tgt}.gz"), lines(f"{src}{tgt}.talp.gz")
    if not len(src_lines) == len(tgt_lines) == len(gold):
        raise DataError(f"{folder}: {len(src_lines)} {src}, {len(tgt_lines)} {tgt} and {len(gold)} gold lines")
    return [s.split() for s in src_lines], [t.split() for t in tgt_lines], gold
