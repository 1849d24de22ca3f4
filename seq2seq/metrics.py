"""Corpus-level BLEU and chrF with sacreBLEU (always with their signatures), their bootstrap intervals,
and the attention statistics that validation logs.

The intervals resample sentences as ``sacrebleu --confidence`` does: each sentence's BLEU
statistics (lengths, n-gram matches and totals) are taken once, from the public fields of a
one-sentence :class:`~sacrebleu.metrics.bleu.BLEUScore`; each resample sums them with
multiplicities and computes BLEU from the sums with the public :meth:`BLEU.compute_bleu`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

ORDER = 4  # BLEU's n-gram orders
SMOOTHING = BLEU().smooth_method  # corpus_score's default ("exp"), used by the intervals too


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float | str]:
    """Score detokenised hypotheses against one reference stream.

    Returns ``bleu``, ``chrf`` and the ``bleu_signature`` / ``chrf_signature`` that say exactly
    how they were computed (tokeniser, smoothing, casing, sacreBLEU version).
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    return {
        "bleu": bleu.corpus_score(list(hypotheses), [list(references)]).score,
        "chrf": chrf.corpus_score(list(hypotheses), [list(references)]).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def attention_statistics(attention, src_lens, tgt_lens) -> tuple[float, float, int]:
    """Sums over real attention rows of (entropy, distance from the diagonal), and the row count.

    ``attention (B, T, S)``, ``src_lens (B,)`` real source positions (EOS included), ``tgt_lens
    (B,)`` real output rows. A row's entropy is ``-sum_s w_s log w_s`` in nats (0: all mass on one
    position; ``log S``: uniform). Its distance from the diagonal is ``|argmax_s / (S - 1) - t / (T - 1)|``
    in relative positions (0: the row looks where a monotone alignment would). Both fall as
    alignments sharpen; divide the sums by the count for means.
    """
    import torch

    weights = attention.float()
    B, T, S = weights.shape
    src_lens, tgt_lens = src_lens.to(weights.device), tgt_lens.to(weights.device)
    rows = torch.arange(T, device=weights.device)[None, :] < tgt_lens[:, None]  # (B, T)
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1)  # (B, T): padded columns hold 0
    src_pos = weights.argmax(-1).float() / (src_lens[:, None] - 1).clamp_min(1).float()  # (B, T)
    tgt_pos = torch.arange(T, device=weights.device)[None, :].float() / (tgt_lens[:, None] - 1).clamp_min(1).float()
    distance = (src_pos - tgt_pos).abs()
    return float(entropy[rows].sum()), float(distance[rows].sum()), int(rows.sum())


def sentence_statistics(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """``(N, 2 + 2 * ORDER)``: each sentence's hypothesis length, reference length, n-gram matches, n-gram totals."""
    bleu = BLEU()
    rows = []
    for hyp, ref in zip(hyps, refs, strict=True):
        score = bleu.corpus_score([hyp], [[ref]])
        rows.append([score.sys_len, score.ref_len, *score.counts, *score.totals])
    return np.array(rows, dtype=np.float64).reshape(len(rows), 2 + 2 * ORDER)


def bleu_from_statistics(row: np.ndarray) -> float:
    """Corpus BLEU from summed :func:`sentence_statistics`, as ``BLEU().corpus_score`` computes it."""
    counts = [int(round(x)) for x in row]  # sums of whole counts
    correct, total = counts[2 : 2 + ORDER], counts[2 + ORDER :]
    return BLEU.compute_bleu(correct, total, counts[0], counts[1], smooth_method=SMOOTHING).score


def bleu_interval(hyps: Sequence[str], refs: Sequence[str], n: int, rng: np.random.Generator) -> list[float]:
    """95% bootstrap interval of corpus BLEU: percentiles 2.5 and 97.5 over ``n`` resamples of the sentences."""
    stats = sentence_statistics(hyps, refs)
    counts = rng.multinomial(len(hyps), np.full(len(hyps), 1.0 / len(hyps)), size=n)  # (n, N)
    low, high = np.percentile([bleu_from_statistics(row) for row in counts @ stats], [2.5, 97.5])
    return [float(low), float(high)]


def gap_interval(
    hyps: Sequence[str], base: Sequence[str], refs: Sequence[str], n: int, rng: np.random.Generator
) -> list[float]:
    """95% paired-bootstrap interval of BLEU(hyps) - BLEU(base) on the same sentences.

    Each resample draws one set of sentences and scores both systems on it, so the interval is
    about the difference itself (much tighter than two separate intervals would suggest).
    """
    a, b = sentence_statistics(hyps, refs), sentence_statistics(base, refs)
    counts = rng.multinomial(len(refs), np.full(len(refs), 1.0 / len(refs)), size=n)
    gaps = [bleu_from_statistics(x) - bleu_from_statistics(y) for x, y in zip(counts @ a, counts @ b)]
    low, high = np.percentile(gaps, [2.5, 97.5])
    return [float(low), float(high)]
