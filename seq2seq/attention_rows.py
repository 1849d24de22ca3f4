"""How the explorer's pages and the training history store attention rows.

Two forms of a row of attention ``(T, S)``:

- the weights, ``[[column, per mille], ...]`` (:func:`sparse_rows`: 95 % of each row's mass at
  least), for the heatmaps of the training slider and of pages from before the step panel;
- what the softmax starts from (:func:`scored_rows`), for the step panel: the largest raw score
  ``m``, the denominator ``Z`` and the scores as ``d_j = m - s_j`` in thousandths. *Full* rows keep
  every source position's score, so the reader can redo the softmax by hand (the sentences a
  learner opens: a page's first sentences, the training history's, a ``--html`` page's);
  *compressed* rows keep the scores of weights of 2 % and more, and ``Z`` still counts the rest.

:func:`step_fields` gives one replayed sentence (:class:`seq2seq.lesson.Steps`) in the page's
record keys (``sa``, ``m``, ``z``, ``cn``, ``vn``), and :func:`weights_of` reads either form back.
:func:`module_fields` keeps a Transformer sentence's other attention modules (every layer, self and cross),
and :func:`module_weights` turns them into the weights the training slider draws.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from seq2seq.lesson import Steps

MIN_PER_MILLE = 2  # beyond 95 % of a row's mass, weights under 2 per mille are left out
MIN_SCORED_PER_MILLE = 20  # compressed rows keep the raw scores of the weights of 2 % and more (and each row's largest)


def sparse_rows(weights) -> list[list[list[int]]]:
    """Attention ``(T, S)`` (a tensor or nested lists) -> per row ``[[column, per mille], ...]``.

    A row keeps its largest weights until they hold 95 % of its mass, and every other weight of
    at least 2 per mille; the kept weights are rounded to whole per mille by largest remainder, so
    they sum to the kept mass (a flat row over a long source is not inflated by rounding).
    """
    rows = weights.tolist() if hasattr(weights, "tolist") else weights
    out = []
    for row in rows:
        keep, mass = [], 0.0
        for j in sorted(range(len(row)), key=row.__getitem__, reverse=True):
            if mass >= 0.95 and row[j] < MIN_PER_MILLE / 1000:
                break
            keep.append(j)
            mass += row[j]
        scaled = [1000 * row[j] for j in keep]
        floors = [math.floor(x) for x in scaled]
        extra = round(sum(scaled)) - sum(floors)
        for k in sorted(range(len(keep)), key=lambda k: scaled[k] - floors[k], reverse=True)[:extra]:
            floors[k] += 1
        out.append(sorted([j, v] for j, v in zip(keep, floors) if v > 0))
    return out


def scored_rows(
    scores: torch.Tensor, weights: torch.Tensor, full: bool = False
) -> tuple[list[list[int]], list[float], list[float]]:
    """The step panel's storage of attention ``(T, S)``: what the softmax starts from, not what it gives.

    Per row ``t``: ``m_t``, the largest raw score (3 decimals); ``Z_t = sum_j exp(s_j - m_t)`` over every
    source position (4 decimals); and the column ``j`` and ``d_j = m_t - s_j`` in thousandths, flat:
    ``[j, d_j, j', d_j', ...]``, for every position (``full``) or for each position whose weight is at
    least 2 % (:data:`MIN_SCORED_PER_MILLE`) and the largest. The page shows ``s_j = m_t - d_j / 1000``
    and computes each weight as the lesson does, ``w_j = exp(s_j - m_t) / Z_t`` (the heatmap's too):
    within 1e-3 of the model's. A full row's ``Z`` is the sum over the stored (rounded) scores, so the
    softmax of the scores as shown is the weights as shown.
    """
    top = scores.max(-1, keepdim=True).values  # (T, 1)
    normaliser = (scores - top).exp().sum(-1)  # (T,)
    rows, zs = [], []
    for s, w, m, z in zip(scores.tolist(), weights.tolist(), top[:, 0].tolist(), normaliser.tolist()):
        best = max(range(len(w)), key=w.__getitem__)
        keep = [j for j in range(len(w)) if full or w[j] * 1000 >= MIN_SCORED_PER_MILLE or j == best]
        row = [x for j in keep for x in (j, round((m - s[j]) * 1000))]
        rows.append(row)
        zs.append(sum(math.exp(-d / 1000) for d in row[1::2]) if full else z)
    return rows, [round(x, 3) for x in top[:, 0].tolist()], [round(x, 4) for x in zs]


def step_fields(steps: Steps, full: bool = False) -> dict[str, Any]:
    """One replayed sentence (one head) in the page's record keys: ``sa``, ``m``, ``z`` (:func:`scored_rows`),
    ``cn`` (‖c_t‖ per row) and ``vn`` (‖v_i‖ per source position), norms to 2 decimals."""
    sa, m, z = scored_rows(steps.scores, steps.weights, full)
    return {
        "sa": sa,
        "m": m,
        "z": z,
        "cn": [round(x, 2) for x in steps.context_norm.tolist()],
        "vn": [round(x, 2) for x in steps.value_norm.tolist()],
    }


def is_full(row: list[int], positions: int) -> bool:
    """Whether a stored row of :func:`scored_rows` holds the score of every one of ``positions``."""
    return len(row) // 2 == positions


def weights_of(out: dict[str, Any], positions: int | None = None) -> list[dict[int, float]] | None:
    """A page record's attention rows as ``{column: weight}``, from its scores or its per-mille weights.

    A full row's weights are the softmax of its stored scores (``Z`` summed again, as the page does);
    ``positions`` defaults to the record's source pieces (a head's record has none: give it).
    """
    if "sa" in out:
        S = positions if positions is not None else len(out.get("sp", ()))
        rows = []
        for row, z in zip(out["sa"], out["z"]):
            exps = {row[k]: math.exp(-row[k + 1] / 1000) for k in range(0, len(row), 2)}
            total = sum(exps.values()) if is_full(row, S) else z
            rows.append({j: e / total for j, e in exps.items()})
        return rows
    if "att" in out:
        return [{j: p / 1000 for j, p in row} for row in out["att"]]
    return None


def dense_rows(out: dict[str, Any], positions: int) -> list[list[float]]:
    """A stored record's weights ``(T, positions)`` as plain rows (:func:`weights_of`)."""
    return [[row.get(j, 0.0) for j in range(positions)] for row in weights_of(out, positions)]


def module_fields(modules: dict[str, Steps], reported: str | None = None) -> dict[str, dict[str, Any]]:
    """A Transformer sentence's attention modules (:func:`seq2seq.lesson_layers.module_steps`) by name,
    but ``reported``, the one the sentence's own ``att``/``heads``/``head_scores`` hold: the heads' mean
    (``att``, sparse) and every score of every step per head (``head_scores``, full rows; each head's
    weights are their softmax) where every score is finite, that is the encoder-decoder and the
    encoder's self-attention; the decoder's self-attention scores the future -inf, so it keeps each
    head's weights (``heads``, sparse) instead."""
    out = {}
    for name, steps in modules.items():
        if name == reported:
            continue
        record: dict[str, Any] = {"att": sparse_rows(steps.weights)}
        if name.startswith("decoder") and name.endswith(".self"):
            record["heads"] = [sparse_rows(head.weights) for head in steps.heads]
        else:
            record["head_scores"] = [step_fields(head, full=True) for head in steps.heads]
        out[name] = record
    return out


def module_weights(modules: dict[str, dict[str, Any]], positions: int) -> dict[str, dict[str, Any]]:
    """A history sentence's modules (:func:`module_fields`) as the training slider draws them: each module's
    mean (``att``) and each head's weights (``heads``), sparse; a head kept as scores becomes its softmax over
    ``positions`` source pieces (the encoder-decoder and the encoder's self-attention are over the source)."""
    out = {}
    for name, module in modules.items():
        heads = module.get("heads")
        if "head_scores" in module:
            heads = [sparse_rows(dense_rows(head, positions)) for head in module["head_scores"]]
        out[name] = {"att": module["att"], **({"heads": heads} if heads else {})}
    return out
