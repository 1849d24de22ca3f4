"""The evaluation report's numbers and tables: BLEU by source length, and the report as Markdown.

BLEU per source-length bucket (1-10, ..., 41-50, 51+ words) comes with a 95% bootstrap interval
(Koehn 2004: resample the bucket's sentence pairs with replacement, corpus BLEU of each resample)
and the bucket's output/reference length ratio. :func:`markdown` writes ``report.md`` from
``report.json``'s dictionary (:func:`seq2seq.evaluate.evaluate_run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU

from seq2seq.metrics import bleu_interval

BUCKETS = (10, 20, 30, 40, 50)
LONG_BUCKETS = (10, 20, 30, 40, 50, 60, 70, 80)  # with --concat: inputs of up to ~90 words and beyond


def bucket_ranges(edges: Sequence[int]) -> list[tuple[int, int | None]]:
    """``(10, 20)`` -> ``[(1, 10), (11, 20), (21, None)]``: inclusive word-count ranges, the last open."""
    lows = [1, *(e + 1 for e in edges)]
    return list(zip(lows, [*edges, None]))


def range_label(low: int, high: int | None) -> str:
    return f"{low}-{high}" if high is not None else f"{low}+"


def length_buckets(
    src_texts: Sequence[str],
    hyps: Sequence[str],
    refs: Sequence[str],
    edges: Sequence[int] = BUCKETS,
    bootstrap: int = 1000,
    rng: np.random.Generator | None = None,
) -> list[dict[str, Any]]:
    """BLEU per source-length bucket (whitespace words), each ``{"range", "n", "bleu", "ci95", "length_ratio"}``.

    ``length_ratio`` is the bucket's hypothesis length over its reference length (sacreBLEU's
    tokens): a model that stops early on long inputs shows it there, before the brevity penalty.
    """
    rng = rng if rng is not None else np.random.default_rng(12345)
    lengths = [len(s.split()) for s in src_texts]
    out = []
    for low, high in bucket_ranges(edges):
        rows = [i for i, n in enumerate(lengths) if n >= low and (high is None or n <= high)]
        entry: dict[str, Any] = {
            "range": range_label(low, high),
            "n": len(rows),
            "bleu": None,
            "ci95": None,
            "length_ratio": None,
        }
        if rows:
            bucket_hyps, bucket_refs = [hyps[i] for i in rows], [refs[i] for i in rows]
            score = BLEU().corpus_score(bucket_hyps, [bucket_refs])
            entry["bleu"] = score.score
            entry["length_ratio"] = score.sys_len / max(score.ref_len, 1)  # < 1: output too short (brevity)
            entry["ci95"] = bleu_interval(bucket_hyps, bucket_refs, bootstrap, rng)
        out.append(entry)
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary table, one bucket table per split, the signatures."""
    lines = [f"# Evaluation of `{report['checkpoint']}` ({report['mode']}, step {report['step']})", ""]
    lines += ["| split | sentences | BLEU | chrF | sentences/s |", "|---|---:|---:|---:|---:|"]
    for split, r in report["splits"].items():
        lines.append(
            f"| {split} | {r['n_sentences']} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['decode']['sent_per_s']:.1f} |"
        )
    for split, r in report["splits"].items():
        lines += ["", f"## {split}: BLEU by source length (words)", ""]
        lines += ["| source words | inputs | BLEU | 95% CI | output / reference length |", "|---|---:|---:|---|---:|"]
        for b in r["buckets"]:
            bleu = "-" if b["bleu"] is None else f"{b['bleu']:.2f}"
            ci = "-" if b["ci95"] is None else f"{b['ci95'][0]:.2f} – {b['ci95'][1]:.2f}"
            ratio = "-" if b.get("length_ratio") is None else f"{b['length_ratio']:.2f}"
            lines.append(f"| {b['range']} | {b['n']} | {bleu} | {ci} | {ratio} |")
        lines += ["", f"- BLEU signature: `{r['bleu_signature']}`", f"- chrF signature: `{r['chrf_signature']}`"]
    if "alignment" in report:
        a = report["alignment"]
        lines += ["", "## Attention as alignment (gold links)", "", "| AER | precision | recall | sentences |"]
        mean = f" (mean of {len(a['heads'])} heads)" if "heads" in a else ""
        lines += [
            "|---:|---:|---:|---:|",
            f"| {a['aer']:.3f} | {a['precision']:.3f} | {a['recall']:.3f} | {a['n_sentences']}{mean} |",
        ]
        for h, x in enumerate(a.get("heads", [])):
            best = ", the best head" if a.get("best_head") == h + 1 else ""
            lines.append(f"| {x['aer']:.3f} | {x['precision']:.3f} | {x['recall']:.3f} | head {h + 1}{best} |")
        if "diagonal" in a:
            d = a["diagonal"]
            lines += [
                f"| {d['aer']:.3f} | {d['precision']:.3f} | {d['recall']:.3f} | diagonal baseline (no model) |",
                "",
                "The diagonal baseline links each target word to the source word at the same relative position;",
                "attention that does not beat it is not acting as a word aligner on this set.",
            ]
    return "\n".join(lines) + "\n"
