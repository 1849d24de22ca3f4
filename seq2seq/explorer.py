"""The attention explorer: one self-contained HTML page of sentences, scores and attention heatmaps.

A page holds one or more *models* (a run's evaluation, or several runs side by side) over the
same *sentences*: the data as JSON and the script inline, no network, so it opens from disk in
any browser. Per sentence and model it keeps the output, a sentence-level chrF (when there is a
reference), the source and output subword pieces, and the attention rows
(:mod:`seq2seq.attention_rows`). Where the model's steps were replayed (:mod:`seq2seq.lesson`:
every evaluation and translation page, and training histories since they keep scores) a row is
stored as the softmax's input, and the page computes the weights from it, as the step panel shows
the reader: with every score for the sentences a learner opens (an evaluation page's first
:data:`FULL_SCORES` sentences of each split, the training history's, every sentence of a
translation page), the scores of weights of 2 % and more for the rest. Otherwise (pages and
histories from before) a row is its weights in per mille. A 2,000-sentence page stays under 3 MB
per model. The page merges pieces into words in the browser (sum over a source word's pieces,
mean over an output word's rows: the AER view of :mod:`seq2seq.alignment`).

The page's script lives in ``assets/``: ``explorer.js`` (the data, summary, length chart, sentence
table and heatmaps), ``layers.js`` (a Transformer's module picker: every layer's cross- and self-attention)
and ``steps.js`` (playback, the step panel, the training slider), inlined as one.

Written by ``make eval`` (``RUN/eval/<mode>/explorer.html`` and the data as ``explorer.json``),
by ``python -m seq2seq.evaluate --compare RUN_A RUN_B ...``, by the length study, and by
``seq2seq-translate --html FILE``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import CHRF

from seq2seq.attention_rows import dense_rows, module_weights, scored_rows, sparse_rows, step_fields, weights_of
from seq2seq.config import Config
from seq2seq.errors import Seq2SeqError
from seq2seq.history import page_history
from seq2seq.history import read as read_history
from seq2seq.lesson import FORMULAS, HEAD_FORMULAS, HEAD_VALUES, QUERIES, Steps
from seq2seq.metrics import attention_statistics
from seq2seq.model import describe
from seq2seq.runs import find_latest_run, run_attention

__all__ = ["Record", "ModelView", "page_data", "record", "run_page", "scored_rows", "sparse_rows", "weights_of"]

FULL_SCORES = 10  # an evaluation page keeps every score of the first 10 sentences of each test split


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
    scored: list[list[int]] | None = None  # per row: [j, (m - s_j) in thousandths, ...]: every j, or weights >= 2 %
    top_score: list[float] | None = None  # per row: m, the largest raw score
    normaliser: list[float] | None = None  # per row: Z = sum_j exp(s_j - m) over every real source position
    context_norm: list[float] | None = None  # per row: ‖c_t‖
    value_norm: list[float] | None = None  # per source position: ‖v_i‖
    # multi-head attention: each head's own of the fields above ("sa", "m", "z", "cn", "vn", "ent",
    # "diag"); ``attention`` is then the mean over heads, what decoding reads
    heads: list[dict[str, Any]] | None = None
    # a Transformer's other attention modules by name (seq2seq.attention_rows.module_fields): every layer's
    # encoder-decoder attention, the encoder's and the decoder's self-attention; the fields above are the last
    # layer's encoder-decoder attention, which decoding reports
    modules: dict[str, dict[str, Any]] | None = None

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
            ("modules", self.modules),
        ):
            if value is not None:
                out[key] = round(value, 3) if isinstance(value, float) else value
        return out

    def set_scores(self, fields: dict[str, Any]) -> None:
        """The step panel's fields in the page's keys (:func:`seq2seq.attention_rows.step_fields`)."""
        self.scored, self.top_score, self.normaliser = fields["sa"], fields["m"], fields["z"]
        self.context_norm, self.value_norm = fields["cn"], fields["vn"]


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


def transformer_info(cfg) -> dict[str, Any]:
    """What the step panel says about a Transformer's attention: scaled dot products per head, in
    ``layers`` decoder layers (cross) and encoder and decoder layers (self), where each module's query
    comes from (the page says why the decoder's self-attention shows weights but no scores)."""
    heads = cfg.heads
    return {
        "type": "transformer",
        "score": "scaled_dot",
        "formula": FORMULAS["scaled_dot"],
        "query": QUERIES["transformer"],
        "d": cfg.d_model // heads,
        "heads": heads,
        "head_formula": "score_n(q, k) = (W_Q x)_nᵀ (W_K m)_n / √d,  d = a head's size",
        "head_values": "v_i here is head n's share of W_V m_i, and the head's context is W_O's n-th input",
        "self_formula": f"score_n(t, j) = (W_Q x_t)_nᵀ (W_K x_j)_n / √d{SELF_BIAS.get(cfg.positions, '')},  d = a head's size",
        "self_values": "v_j here is head n's share of W_V x_j, and the head's context is W_O's n-th input",
        "self_query": SELF_QUERIES,
        "layers": {"encoder": cfg.encoder_layers, "decoder": cfg.decoder_layers},
        "positions": cfg.positions,
    }


SELF_QUERIES = {  # x: a position's state entering the layer (after its layer norm with norm=pre)
    "encoder": "the source position's state entering this encoder layer, through W_Q (the keys and values: "
    "every source position's state in the same layer, through W_K and W_V)",
    "decoder": "the output position's state entering this decoder layer, through W_Q (the keys and values: "
    "the output positions up to this one in the same layer, through W_K and W_V)",
}
SELF_BIAS = {"relative": " + b_n(j − t), a learned bias per offset", "rope": ", q and k rotated by position"}


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
    full: bool = False,
) -> Record:
    """A :class:`Record` with its sentence chrF (if ``ref``) and attention statistics (if ``attention``).

    With ``steps`` (:func:`seq2seq.lesson.attention_steps`) the record stores the raw scores instead of
    the weights, and the weights follow from them as the softmax does (:func:`scored_rows`): every
    score with ``full``, else those of weights of 2 % and more.
    """
    rec = Record(hyp, src_pieces, out_pieces)
    if ref is not None:
        rec.chrf = CHRF().sentence_score(hyp, [ref]).score
    if steps is not None and len(steps.scores):
        rec.entropy, rec.diagonal = row_statistics(steps.weights)
        if steps.heads:
            rec.attention = sparse_rows(steps.weights)  # the mean over heads: no one softmax gives it
            rec.heads = [_head(step_fields(head, full), head.weights) for head in steps.heads]
        else:
            rec.set_scores(step_fields(steps, full))
        return rec
    if attention is not None:
        rec.attention = sparse_rows(attention)
        rec.entropy, rec.diagonal = row_statistics(attention)
    return rec


def _head(fields: dict[str, Any], weights) -> dict[str, Any]:
    """One head of a multi-head record: its step-panel fields and its own entropy and diagonal distance."""
    entropy, diagonal = row_statistics(weights)
    return {**fields, "ent": round(entropy, 3), "diag": round(diagonal, 3)}


def page_data(
    title: str,
    sentences: Sequence[dict[str, Any]],
    models: Sequence[ModelView],
    notes: Sequence[str] = (),
    history: dict[str, Any] | None = None,
    history_note: str | None = None,
    scores_note: str | None = None,
) -> dict[str, Any]:
    """The page's JSON: ``sentences`` are ``{"split", "src", "ref"?}``; each model has a record per sentence.

    ``history`` (:func:`seq2seq.history.page_history`): the attention of the fixed validation
    sentences at every validation of the run, for the page's training-step slider; ``history_note``:
    one line the page shows there (why there is no history, or what was skipped); ``scores_note``:
    which sentences keep every score, for the step panel of the compressed ones.
    """
    for model in models:
        if len(model.records) != len(sentences):
            raise ValueError(f"model {model.name}: {len(model.records)} records for {len(sentences)} sentences")
    return {
        "title": title,
        "notes": list(notes),
        **({"history": history} if history is not None else {}),
        **({"history_note": history_note} if history_note else {}),
        **({"scores_note": scores_note} if scores_note else {}),
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
        .replace("__SCRIPT__", "".join(_asset(f"{name}.js") for name in SCRIPTS))
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
    merged = {"title": title, "notes": list(dict.fromkeys(notes)), "models": models, "sentences": sentences}
    return {**merged, **({"scores_note": first["scores_note"]} if "scores_note" in first else {})}


def run_page(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """A run's page without evaluating it: the fixed validation sentences as the model wrote them at
    its last validation, with every score where the history keeps them, and the training-step slider
    over every validation (``python -m seq2seq.explorer RUN``; ``make eval``'s page has the same
    slider beside the test sentences)."""
    run_dir = Path(run_dir)
    name, info = _run_model(run_dir)
    history, note = page_history(run_dir, panel=True) if info is not None else (None, NO_ATTENTION)
    sentences: list[dict[str, Any]] = []
    records: list[Record] = []
    if history is not None:
        panel = history.pop("panel")
        modules = history_modules(run_dir, history) if info["type"] == "transformer" else [None] * len(panel)
        for s, frame, fields, layered in zip(history["sentences"], history["frames"][-1], panel, modules):
            sentences.append({"split": "valid", "src": s["src"]})
            records.append(_history_record(s["sp"], frame, fields))
            records[-1].modules = layered
    if info is not None and not all(r.scored or (r.heads and "sa" in r.heads[0]) for r in records):
        info["no_scores"] = NO_SCORES
    title = f"{run_dir.name}: {name}, attention over training"
    data = page_data(title, sentences, [ModelView(name, records, attention=info)], (), history, note)
    return write_page(out or run_dir / "explorer.html", data)


def _run_model(run_dir: Path) -> tuple[str, dict[str, Any] | None]:
    """A run's model name and its step panel's labels (:func:`transformer_info`, :func:`attention_info`)."""
    try:
        raw = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        transformer = raw["model"].get("family") == "transformer"
    except (OSError, ValueError, KeyError, AttributeError):
        transformer = False  # run_attention says what is wrong with the run directory
    if transformer:
        config = Config.from_dict(raw)
        return describe(config), transformer_info(config.model)
    a = run_attention(run_dir)
    return a.name, attention_info(a.wiring, a.score, a.key_size, a.heads)


def history_modules(run_dir: str | Path, history: dict[str, Any]) -> list[dict[str, Any] | None]:
    """A Transformer run's other attention modules, from its history's lines: into every frame of ``history``
    (:func:`seq2seq.history.page_history`) as weights, for the slider (:func:`module_weights`), and returned
    for the last validation's sentences as the history keeps them (every score), for the page's records."""
    by_step = {entry["step"]: entry["sentences"] for entry in read_history(run_dir)[0]}
    for step, frames in zip(history["steps"], history["frames"]):
        for s, frame in zip(by_step.get(step, []), frames):
            if isinstance(s.get("modules"), dict):
                frame["modules"] = module_weights(s["modules"], len(s.get("sp", ())))
    last, n = by_step.get(history["steps"][-1], []), len(history["sentences"])
    return [last[i].get("modules") if i < len(last) else None for i in range(n)]


def _history_record(sp: list[str], frame: dict[str, Any], fields: dict[str, Any]) -> Record:
    """A sentence of the last validation as the page's record: its scores where the history keeps them."""
    rec = Record(frame["hyp"], sp, frame["op"])
    if "head_scores" in fields:
        rec.attention = frame["att"]
        rec.heads = [_head(head, dense_rows(head, len(sp))) for head in fields["head_scores"]]
    elif "sa" in fields:
        rec.set_scores(fields)
        rec.entropy, rec.diagonal = row_statistics(dense_rows(fields, len(sp)))
    else:  # a history from before it kept scores: the weights alone
        rec.attention = frame["att"]
        rec.heads = [{"att": rows} for rows in frame["heads"]] if frame.get("heads") else None
    return rec


NO_ATTENTION = "attention=none: this model has no attention to watch forming over training."
NO_SCORES = (
    "This run's training history keeps the weights of each validation but not the raw scores the panel "
    "starts from (it was written before seq2seq stored them): make eval replays the model and shows them."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seq2seq.explorer",
        description="Write a run's explorer page from its training history, without evaluating it.",
    )
    where = "a run directory with config.json and attention_history.jsonl (default: the newest under outputs/)"
    parser.add_argument("run", nargs="?", help=where)
    parser.add_argument("--run", dest="run_option", metavar="DIR", help="the same, as make eval takes it")
    parser.add_argument("--out", help="where to write the page (default RUN/explorer.html)")
    args = parser.parse_args(argv)
    if args.run and args.run_option and args.run != args.run_option:
        parser.error(f"two runs given ({args.run} and --run {args.run_option}): give one")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        page = run_page(args.run or args.run_option or find_latest_run(), args.out)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {page}")
    return 0


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


DATA_OPEN = '<script id="data" type="application/json">'
ASSETS = Path(__file__).parent / "assets"  # the page's HTML and CSS, and its script
SCRIPTS = ("explorer", "layers", "steps")  # one script, in this order (steps.js starts the page)


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
