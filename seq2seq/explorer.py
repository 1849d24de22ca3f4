"""The attention explorer: one self-contained HTML page of sentences, scores and attention heatmaps.

A page holds one or more *models* (a run's evaluation, or several runs side by side) over the
same *sentences*: the data as JSON and the script inline, no network, so it opens from disk in
any browser. Per sentence and model it keeps the output, a sentence-level chrF (when there is a
reference), the source and output subword pieces, and the attention rows. Where the model's steps
were replayed (:mod:`seq2seq.lesson`: every evaluation and translation page) a row is stored as the
softmax's input, the raw scores of its weights of 2 % and more and the softmax denominator
(:func:`scored_rows`), and the page computes the weights from them, as the step panel shows the
reader; otherwise (the training history, pages from before) as ``[[column, per mille], ...]``
(:func:`sparse_rows`: 95 % of each row's mass at least). A 2,000-sentence page stays under 3 MB
per model. The page merges pieces into words in the browser (sum over a source word's pieces,
mean over an output word's rows: the AER view of :mod:`seq2seq.alignment`).

The playback, the step panel and the training slider live in the page's script (``assets/``).

Written by ``make eval`` (``RUN/eval/<mode>/explorer.html`` and the data as ``explorer.json``),
by ``python -m seq2seq.evaluate --compare RUN_A RUN_B ...``, by the length study, and by
``seq2seq-translate --html FILE``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import CHRF

from seq2seq.errors import Seq2SeqError
from seq2seq.history import page_history
from seq2seq.lesson import FORMULAS, HEAD_FORMULAS, HEAD_VALUES, QUERIES, Steps
from seq2seq.metrics import attention_statistics

MIN_PER_MILLE = 2  # beyond 95 % of a row's mass, weights under 2 per mille are left out
MIN_SCORED_PER_MILLE = 20  # the step panel keeps the raw scores of the weights of 2 % and more (and each row's largest)


@dataclass
class Record:
    """One sentence as one model saw it."""

    hyp: str
    src_pieces: list[str]
    out_pieces: list[str]
    attention: list[list[list[int]]] | None = None  # per output row: [[source column, per mille], ...]
    chrf: float | None = None
    entropy: float | None = None  # mean row entropy (nats)
    diagonal: float | None = None  # mean |argmax position - diagonal|, relative positions
    # the step panel (seq2seq.lesson.Steps), where the model attends:
    # (then instead of ``attention``: the weights follow from the scores, :func:`scored_rows`)
    scored: list[list[int]] | None = None  # per row: [j, (m - s_j) in thousandths, ...] for weights of 2 % and more
    top_score: list[float] | None = None  # per row: m, the largest raw score
    normaliser: list[float] | None = None  # per row: Z = sum_j exp(s_j - m) over every real source position
    context_norm: list[float] | None = None  # per row: ‖c_t‖
    value_norm: list[float] | None = None  # per source position: ‖v_i‖
    # multi-head attention: each head's own of the fields above ("sa", "m", "z", "cn", "vn", "ent",
    # "diag"); ``attention`` is then the mean over heads, what decoding reads
    heads: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hyp": self.hyp, "sp": self.src_pieces, "op": self.out_pieces}
        for key, value in (
            ("att", self.attention),
            ("chrf", self.chrf),
            ("ent", self.entropy),
            ("diag", self.diagonal),
            ("sa", self.scored),
            ("m", self.top_score),
            ("z", self.normaliser),
            ("cn", self.context_norm),
            ("vn", self.value_norm),
            ("heads", self.heads),
        ):
            if value is not None:
                out[key] = round(value, 3) if isinstance(value, float) else value
        return out


@dataclass
class ModelView:
    """A model's column of the page: its name, the report's numbers, a record per sentence."""

    name: str
    records: list[Record]
    summary: dict[str, Any] = field(default_factory=dict)  # {split: {bleu, chrf, signatures, buckets}}
    attention: dict[str, str] | None = None  # the step panel's labels: :func:`attention_info`


def attention_info(wiring: str, score: str, key_size: int, heads: int = 1) -> dict[str, Any] | None:
    """What the step panel says about a model's attention: wiring, score name, formula, which vector
    is the query, and (for the scaled dot product) the key size d; with heads, their number, a
    head's formula and what its values are."""
    if wiring == "none":
        return None
    info: dict[str, Any] = {"type": wiring, "score": score, "formula": FORMULAS[score], "query": QUERIES[wiring]}
    if score == "scaled_dot":
        info["d"] = key_size // heads
    if heads > 1:
        info.update(heads=heads, head_formula=HEAD_FORMULAS[score], head_values=HEAD_VALUES)
    return info


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


def row_statistics(weights) -> tuple[float, float]:
    """Mean entropy (nats) and mean distance from the diagonal of one attention matrix ``(T, S)``.

    The same figures as validation logs (:func:`seq2seq.metrics.attention_statistics`), for one sentence.
    """
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.numel() == 0:
        return 0.0, 0.0
    T, S = weights.shape
    entropy, distance, rows = attention_statistics(weights[None], torch.tensor([S]), torch.tensor([T]))
    return entropy / rows, distance / rows


def record(
    hyp: str,
    src_pieces: list[str],
    out_pieces: list[str],
    attention=None,
    ref: str | None = None,
    steps: Steps | None = None,
) -> Record:
    """A :class:`Record` with its sentence chrF (if ``ref``) and attention statistics (if ``attention``).

    With ``steps`` (:func:`seq2seq.lesson.attention_steps`) the record stores the raw scores instead of
    the weights, and the weights follow from them as the softmax does (:func:`scored_rows`).
    """
    rec = Record(hyp, src_pieces, out_pieces)
    if ref is not None:
        rec.chrf = CHRF().sentence_score(hyp, [ref]).score
    if steps is not None and len(steps.scores) and steps.heads:
        rec.attention = sparse_rows(steps.weights)  # the mean over heads: no one softmax gives it
        rec.entropy, rec.diagonal = row_statistics(steps.weights)
        rec.heads = [_head(head) for head in steps.heads]
        return rec
    if steps is not None and len(steps.scores):
        rec.entropy, rec.diagonal = row_statistics(steps.weights)
        rec.scored, rec.top_score, rec.normaliser = scored_rows(steps.scores, steps.weights)
        rec.context_norm = [round(x, 1) for x in steps.context_norm.tolist()]
        rec.value_norm = [round(x, 1) for x in steps.value_norm.tolist()]
        return rec
    if attention is not None:
        rec.attention = sparse_rows(attention)
        rec.entropy, rec.diagonal = row_statistics(attention)
    return rec


def _head(steps: Steps) -> dict[str, Any]:
    """One head of a multi-head record, in the step panel's storage (:func:`scored_rows`)."""
    sa, m, z = scored_rows(steps.scores, steps.weights)
    entropy, diagonal = row_statistics(steps.weights)
    return {
        "sa": sa,
        "m": m,
        "z": z,
        "cn": [round(x, 1) for x in steps.context_norm.tolist()],
        "vn": [round(x, 1) for x in steps.value_norm.tolist()],
        "ent": round(entropy, 3),
        "diag": round(diagonal, 3),
    }


def scored_rows(scores: torch.Tensor, weights: torch.Tensor) -> tuple[list[list[int]], list[float], list[float]]:
    """The step panel's storage of attention ``(T, S)``: what the softmax starts from, not what it gives.

    Per row ``t``: ``m_t``, the largest raw score (3 decimals); ``Z_t = sum_j exp(s_j - m_t)`` over every
    source position (4 decimals); and, for each position whose weight is at least 2 %
    (:data:`MIN_SCORED_PER_MILLE`) and for the largest, the column ``j`` and ``d_j = m_t - s_j`` in
    thousandths, flat: ``[j, d_j, j', d_j', ...]``. The page shows ``s_j = m_t - d_j / 1000`` and
    computes each weight as the lesson does, ``w_j = exp(s_j - m_t) / Z_t`` (the heatmap's too):
    within 1e-3 of the model's. Weights under 2 % are not kept (the panel names those positions).
    """
    top = scores.max(-1, keepdim=True).values  # (T, 1)
    normaliser = (scores - top).exp().sum(-1)  # (T,)
    rows = []
    for s, w, m in zip(scores.tolist(), weights.tolist(), top[:, 0].tolist()):
        best = max(range(len(w)), key=w.__getitem__)
        keep = [j for j in range(len(w)) if w[j] * 1000 >= MIN_SCORED_PER_MILLE or j == best]
        rows.append([x for j in keep for x in (j, round((m - s[j]) * 1000))])
    return rows, [round(x, 3) for x in top[:, 0].tolist()], [round(x, 4) for x in normaliser.tolist()]


def weights_of(out: dict[str, Any]) -> list[dict[int, float]] | None:
    """A page record's attention rows as ``{column: weight}``, from its scores or its per-mille weights."""
    if "sa" in out:
        return [
            {row[k]: math.exp(-row[k + 1] / 1000) / z for k in range(0, len(row), 2)}
            for row, z in zip(out["sa"], out["z"])
        ]
    if "att" in out:
        return [{j: p / 1000 for j, p in row} for row in out["att"]]
    return None


def page_data(
    title: str,
    sentences: Sequence[dict[str, Any]],
    models: Sequence[ModelView],
    notes: Sequence[str] = (),
    history: dict[str, Any] | None = None,
    history_note: str | None = None,
) -> dict[str, Any]:
    """The page's JSON: ``sentences`` are ``{"split", "src", "ref"?}``; each model has a record per sentence.

    ``history`` (:func:`seq2seq.history.page_history`): the attention of the fixed validation
    sentences at every validation of the run, for the page's training-step slider; ``history_note``:
    one line the page shows there (why there is no history, or what was skipped).
    """
    for model in models:
        if len(model.records) != len(sentences):
            raise ValueError(f"model {model.name}: {len(model.records)} records for {len(sentences)} sentences")
    return {
        "title": title,
        "notes": list(notes),
        **({"history": history} if history is not None else {}),
        **({"history_note": history_note} if history_note else {}),
        "models": [
            {"name": m.name, "summary": m.summary, **({"attention": m.attention} if m.attention else {})}
            for m in models
        ],
        "sentences": [
            {
                "split": s.get("split", ""),
                "src": s["src"],
                **({"ref": s["ref"]} if s.get("ref") is not None else {}),
                "words": len(s["src"].split()),
                "out": [m.records[i].to_json() for m in models],
            }
            for i, s in enumerate(sentences)
        ],
    }


def write_page(path: str | Path, data: dict[str, Any]) -> Path:
    """Write the self-contained page (the data inline, safe inside ``<script>``)."""
    path = Path(path)
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    html = (
        _asset("explorer.html")
        .replace("__TITLE__", _escape(data["title"]))
        .replace("__SCRIPT__", _asset("explorer.js"))
        .replace("__DATA__", payload)  # last: the data may hold any of the markers
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def read_page_data(path: str | Path) -> dict[str, Any]:
    """The JSON embedded in a page written by :func:`write_page` (tests and ``--compare`` read it back)."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.index(DATA_OPEN) + len(DATA_OPEN)
    return json.loads(text[start : text.index("</script>", start)].replace("<\\/", "</"))


def merge_models(pages: Sequence[dict[str, Any]], names: Sequence[str], title: str) -> dict[str, Any]:
    """One page of several single-model pages over the same sentences, models side by side."""
    first = pages[0]
    for name, page in zip(names, pages):
        if [s["src"] for s in page["sentences"]] != [s["src"] for s in first["sentences"]]:
            raise ValueError(f"{name} was evaluated on other sentences than {names[0]}; compare runs of one corpus")
    sentences = []
    for i, s in enumerate(first["sentences"]):
        sentences.append({**s, "out": [page["sentences"][i]["out"][0] for page in pages]})
    models = [{**page["models"][0], "name": name} for name, page in zip(names, pages)]
    notes = [note for page in pages for note in page.get("notes", [])]
    return {"title": title, "notes": list(dict.fromkeys(notes)), "models": models, "sentences": sentences}


def run_page(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """A run's page without evaluating it: the fixed validation sentences as the model wrote them at
    its last validation, and the training-step slider over every validation (``python -m
    seq2seq.explorer RUN``; ``make eval``'s page has the same slider beside the test sentences)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise Seq2SeqError(f"{run_dir} is not a directory: give a run directory (outputs/<date>/<time>_<attention>)")
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        wiring, score = config["attention"]["type"], config["attention"]["score"]
        heads = int(config["attention"].get("heads", 1))
        model = config["model"]
        key_size = model["encoder_size"] * (2 if model["bidirectional"] else 1)
    except (OSError, ValueError, KeyError, TypeError):
        raise Seq2SeqError(f"{run_dir} has no readable config.json: is it a run directory of train.py?") from None
    name = "none" if wiring == "none" else f"{wiring} ({score}{f', {heads} heads' if heads > 1 else ''})"
    history, note = page_history(run_dir) if wiring != "none" else (None, NO_ATTENTION)
    sentences: list[dict[str, Any]] = []
    records: list[Record] = []
    if history is not None:
        last = history["frames"][-1]
        for s, frame in zip(history["sentences"], last):
            sentences.append({"split": "valid", "src": s["src"]})
            by_head = [{"att": rows} for rows in frame["heads"]] if frame.get("heads") else None
            records.append(Record(frame["hyp"], s["sp"], frame["op"], frame["att"], heads=by_head))
    title = f"{run_dir.name}: {name}, attention over training"
    data = page_data(
        title,
        sentences,
        [ModelView(name, records, attention=attention_info(wiring, score, key_size, heads))],
        (),
        history,
        note,
    )
    return write_page(out or run_dir / "explorer.html", data)


NO_ATTENTION = "attention=none: this model has no attention to watch forming over training."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seq2seq.explorer",
        description="Write a run's explorer page from its training history, without evaluating it.",
    )
    parser.add_argument(
        "run", nargs="?", help="a run directory with config.json and attention_history.jsonl (default: the latest run)"
    )
    parser.add_argument("--out", help="where to write the page (default RUN/explorer.html)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        from seq2seq.evaluate import find_latest_run  # evaluate imports this module

        page = run_page(args.run or find_latest_run(), args.out)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {page}")
    return 0


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


DATA_OPEN = '<script id="data" type="application/json">'
ASSETS = Path(__file__).parent / "assets"  # the page's HTML and CSS, and its script


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
