"""Corpus-level BLEU and chrF with sacreBLEU, always reported with their signatures."""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF


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
