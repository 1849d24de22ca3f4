"""The attention explorer: one self-contained HTML page of sentences, scores and attention heatmaps.

A page holds one or more *models* (a run's evaluation, or several runs side by side) over the
same *sentences*: the data as JSON and the script inline, no network, so it opens from disk in
any browser. Per sentence and model it keeps the output, a sentence-level chrF (when there is a
reference), the source and output subword pieces, and the attention rows, each stored sparsely as
``[[column, per mille], ...]`` (:func:`sparse_rows`: 95 % of each row's mass at least, so a
1,000-sentence test set stays around a megabyte per model). The page merges pieces into words in
the browser (sum over a source word's pieces, mean over an output word's rows: the AER view of
:mod:`seq2seq.alignment`).

Written by ``make eval`` (``RUN/eval/<mode>/explorer.html`` and the data as ``explorer.json``),
by ``python -m seq2seq.evaluate --compare RUN_A RUN_B ...``, by the length study, and by
``seq2seq-translate --html FILE``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import CHRF

from seq2seq.metrics import attention_statistics

MIN_PER_MILLE = 2  # beyond 95 % of a row's mass, weights under 2 per mille are left out


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

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hyp": self.hyp, "sp": self.src_pieces, "op": self.out_pieces}
        for key, value in (
            ("att", self.attention),
            ("chrf", self.chrf),
            ("ent", self.entropy),
            ("diag", self.diagonal),
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


def record(hyp: str, src_pieces: list[str], out_pieces: list[str], attention=None, ref: str | None = None) -> Record:
    """A :class:`Record` with its sentence chrF (if ``ref``) and attention statistics (if ``attention``)."""
    rec = Record(hyp, src_pieces, out_pieces)
    if ref is not None:
        rec.chrf = CHRF().sentence_score(hyp, [ref]).score
    if attention is not None:
        rec.attention = sparse_rows(attention)
        rec.entropy, rec.diagonal = row_statistics(attention)
    return rec


def page_data(
    title: str,
    sentences: Sequence[dict[str, Any]],
    models: Sequence[ModelView],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The page's JSON: ``sentences`` are ``{"split", "src", "ref"?}``; each model has a record per sentence."""
    for model in models:
        if len(model.records) != len(sentences):
            raise ValueError(f"model {model.name}: {len(model.records)} records for {len(sentences)} sentences")
    return {
        "title": title,
        "notes": list(notes),
        "models": [{"name": m.name, "summary": m.summary} for m in models],
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
    html = TEMPLATE.replace("__TITLE__", _escape(data["title"])).replace("__DATA__", payload)
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


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


DATA_OPEN = '<script id="data" type="application/json">'

TEMPLATE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1rem 1.5rem; color: #222; }
h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
h2 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
table { border-collapse: collapse; }
.summary td, .summary th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
.summary td:first-child, .summary th:first-child { text-align: left; }
.sig { font: 11px monospace; color: #555; }
#filters { display: flex; gap: 1rem; flex-wrap: wrap; align-items: end; margin: .5rem 0; }
#filters label { display: flex; flex-direction: column; font-size: 12px; }
#filters input, #filters select { font-size: 13px; }
#list { max-height: 22rem; overflow: auto; border: 1px solid #ccc; }
#sentences { width: 100%; }
#sentences th { position: sticky; top: 0; background: #f1f1f1; cursor: pointer; user-select: none; }
#sentences th, #sentences td { border-bottom: 1px solid #e4e4e4; padding: 2px 6px; vertical-align: top; text-align: left; }
#sentences td.num { text-align: right; white-space: nowrap; }
#sentences tr.row:hover { background: #f6f6ff; }
#sentences tr.selected { background: #e3e8ff; }
#views { display: flex; gap: 1.5rem; flex-wrap: wrap; align-items: flex-start; }
.view { margin-top: .5rem; }
.view h3 { font-size: .95rem; margin: .3rem 0; }
.heat td { width: 22px; height: 18px; padding: 0; border: 1px solid #fff; text-align: center; font-size: 9px; color: #000; }
.heat td.v { color: #fff; }
.heat th { font-weight: normal; font-size: 11px; padding: 0 3px; white-space: nowrap; }
.heat th.src { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; height: 5rem; }
.heat th.out { text-align: right; }
.heat .hl { outline: 2px solid #e66; }
.heat th.on { background: #fde5a6; }
.muted { color: #777; }
.legend { font-size: 12px; color: #555; margin: .3rem 0; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="notes" class="muted"></div>
<div id="summary"></div>
<h2>Sentences</h2>
<div id="filters">
  <label>text contains <input id="q" type="search" placeholder="source, reference or output"></label>
  <label>split <select id="split"><option value="">all</option></select></label>
  <label>source words from <input id="minlen" type="number" min="0" style="width:5em"></label>
  <label>to <input id="maxlen" type="number" min="0" style="width:5em"></label>
  <label>score from <input id="minscore" type="number" min="0" max="100" style="width:5em"></label>
  <label>to <input id="maxscore" type="number" min="0" max="100" style="width:5em"></label>
  <span id="count" class="muted"></span>
</div>
<div id="list"><table id="sentences"><thead></thead><tbody></tbody></table></div>
<h2 id="detail-title">Attention</h2>
<div class="legend">Select a sentence. Rows: output pieces; columns: source pieces; each cell is the
percentage of attention (hover shows it, or tick "values"). Hover an output piece to mark the source
it attends to; hover a source piece to mark the outputs that attend to it.
<label><input id="words" type="checkbox"> words (subwords merged)</label>
<label><input id="values" type="checkbox"> values</label></div>
<div id="views"></div>
"""
    + DATA_OPEN
    + """__DATA__</script>
<script>
"use strict";
window.addEventListener("error", (e) => { document.body.dataset.error = String(e.message); });
const DATA = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, text) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
};
const hasRef = DATA.sentences.some((s) => s.ref !== undefined);
let order = DATA.sentences.map((_, i) => i), sortKey = "index", sortUp = true, selected = null;

function fmt(x, digits = 1) { return x === undefined || x === null ? "–" : Number(x).toFixed(digits); }

function drawSummary() {
  $("title").textContent = DATA.title;
  document.title = DATA.title;
  $("notes").textContent = DATA.notes.join(" ");
  const box = $("summary");
  const splits = [...new Set(DATA.models.flatMap((m) => Object.keys(m.summary || {})))];
  if (!splits.length) return;
  const table = el("table", { class: "summary" });
  const head = el("tr");
  ["model", ...splits.map((s) => s + " BLEU"), ...splits.map((s) => s + " chrF")].forEach((h) => head.appendChild(el("th", {}, h)));
  table.appendChild(head);
  for (const m of DATA.models) {
    const tr = el("tr");
    tr.appendChild(el("td", {}, m.name));
    splits.forEach((s) => tr.appendChild(el("td", {}, fmt(m.summary[s] && m.summary[s].bleu, 2))));
    splits.forEach((s) => tr.appendChild(el("td", {}, fmt(m.summary[s] && m.summary[s].chrf, 2))));
    table.appendChild(tr);
  }
  box.appendChild(table);
  const sig = DATA.models.map((m) => Object.values(m.summary || {})[0]).find((r) => r && r.bleu_signature);
  if (sig) box.appendChild(el("div", { class: "sig" }, "BLEU " + sig.bleu_signature + " · chrF " + sig.chrf_signature));
  box.appendChild(lengthChart(splits));
}

function lengthChart(splits) {
  // BLEU by source-length bucket: one polyline per model and split (an inline SVG, no library)
  const series = [];
  DATA.models.forEach((m, mi) => splits.forEach((s) => {
    const r = m.summary[s];
    if (r && r.buckets) series.push({ label: m.name + " · " + s, buckets: r.buckets, colour: mi });
  }));
  const wrap = el("div");
  if (!series.length) return wrap;
  const labels = series[0].buckets.map((b) => b.range);
  const W = 80 + 60 * labels.length, H = 200, top = 10, left = 40, bottom = 30;
  const max = Math.max(10, ...series.flatMap((s) => s.buckets.map((b) => b.bleu || 0)));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "BLEU by source length");
  const x = (i) => left + 30 + i * 60, y = (v) => top + (H - top - bottom) * (1 - v / max);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.appendChild(n); return n;
  };
  add("line", { x1: left, y1: y(0), x2: W - 10, y2: y(0), stroke: "#999" });
  for (let v = 0; v <= max; v += 10) add("text", { x: 4, y: y(v) + 4, "font-size": 10 }, String(v));
  labels.forEach((l, i) => add("text", { x: x(i) - 14, y: H - 10, "font-size": 10 }, l));
  const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
  const dashes = ["", "4 3", "1 3", "6 2 1 2"];
  const seen = {};
  series.forEach((s) => {
    const k = (seen[s.colour] = (seen[s.colour] || 0) + 1) - 1;
    const pts = s.buckets.map((b, i) => (b.bleu === null || b.bleu === undefined ? null : [x(i), y(b.bleu), b])).filter(Boolean);
    add("polyline", { points: pts.map((p) => p[0] + "," + p[1]).join(" "), fill: "none",
      stroke: palette[s.colour % 6], "stroke-dasharray": dashes[k % 4], "stroke-width": 2 });
    pts.forEach((p) => add("circle", { cx: p[0], cy: p[1], r: 3, fill: palette[s.colour % 6] })
      .appendChild(document.createElementNS("http://www.w3.org/2000/svg", "title")).textContent =
      s.label + ", " + p[2].range + " words: BLEU " + fmt(p[2].bleu) + " (" + p[2].n + " sentences)");
  });
  wrap.appendChild(el("h2", {}, "BLEU by source length (hover a point for its value)"));
  wrap.appendChild(svg);
  const key = el("div", { class: "legend" });
  series.forEach((s) => key.appendChild(el("span", { style: "color:" + palette[s.colour % 6] + ";margin-right:1em" }, "— " + s.label)));
  wrap.appendChild(key);
  return wrap;
}

function score(s, m) { const o = s.out[m]; return o.chrf; }

function columns() {
  const cols = [["index", "#"], ["split", "split"], ["words", "source words"], ["src", "source"]];
  if (hasRef) cols.push(["ref", "reference"]);
  DATA.models.forEach((m, i) => {
    cols.push(["hyp" + i, m.name + " output"]);
    if (hasRef) cols.push(["chrf" + i, (DATA.models.length > 1 ? m.name + " " : "") + "chrF"]);
  });
  return cols;
}

function value(i, key) {
  const s = DATA.sentences[i];
  if (key === "index") return i;
  if (key.startsWith("hyp")) return s.out[+key.slice(3)].hyp;
  if (key.startsWith("chrf")) return s.out[+key.slice(4)].chrf;
  return s[key];
}

function drawHead() {
  const tr = el("tr");
  for (const [key, label] of columns()) {
    const th = el("th", { "data-key": key, title: "sort by " + label }, label + (sortKey === key ? (sortUp ? " ▲" : " ▼") : ""));
    th.addEventListener("click", () => { sortUp = sortKey === key ? !sortUp : true; sortKey = key; drawTable(); });
    tr.appendChild(th);
  }
  const head = document.querySelector("#sentences thead");
  head.replaceChildren(tr);
}

function passes(i) {
  const s = DATA.sentences[i], q = $("q").value.trim().toLowerCase();
  if ($("split").value && s.split !== $("split").value) return false;
  const lo = $("minlen").value, hi = $("maxlen").value;
  if (lo !== "" && s.words < +lo) return false;
  if (hi !== "" && s.words > +hi) return false;
  const slo = $("minscore").value, shi = $("maxscore").value;
  if (hasRef && (slo !== "" || shi !== "")) {
    const sc = score(s, 0);
    if (slo !== "" && sc < +slo) return false;
    if (shi !== "" && sc > +shi) return false;
  }
  if (q && ![s.src, s.ref || "", ...s.out.map((o) => o.hyp)].some((t) => t.toLowerCase().includes(q))) return false;
  return true;
}

function drawTable() {
  drawHead();
  order.sort((a, b) => {
    const va = value(a, sortKey), vb = value(b, sortKey);
    const c = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
    return sortUp ? c : -c;
  });
  const body = document.querySelector("#sentences tbody");
  const rows = [];
  let shown = 0;
  for (const i of order) {
    if (!passes(i)) continue;
    shown++;
    const tr = el("tr", { class: "row" + (i === selected ? " selected" : ""), "data-index": i, tabindex: 0 });
    for (const [key] of columns()) {
      const v = value(i, key);
      const numeric = typeof v === "number";
      tr.appendChild(el("td", numeric ? { class: "num" } : {}, numeric && key.startsWith("chrf") ? fmt(v) : String(v)));
    }
    tr.addEventListener("click", () => select(i));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") select(i); });
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $("count").textContent = shown + " of " + DATA.sentences.length + " sentences";
}

function dense(att, T, S) {
  const m = Array.from({ length: T }, () => new Array(S).fill(0));
  att.forEach((row, t) => row.forEach(([j, p]) => { if (t < T && j < S) m[t][j] = p / 1000; }));
  return m;
}

function wordsOf(pieces) {
  // SentencePiece marks a word's first piece with U+2581; </s> stays a word of its own
  const ids = [];
  let w = -1;
  pieces.forEach((p, i) => { if (i === 0 || p.startsWith("\\u2581") || p === "</s>" || pieces[i - 1] === "</s>") w++; ids.push(w); });
  return ids;
}

function mergeWords(m, srcPieces, outPieces) {
  const sw = wordsOf(srcPieces), ow = wordsOf(outPieces);
  const S = Math.max(...sw) + 1, T = Math.max(...ow) + 1;
  const out = Array.from({ length: T }, () => new Array(S).fill(0)), count = new Array(T).fill(0);
  m.forEach((row, t) => { count[ow[t]]++; row.forEach((w, j) => { out[ow[t]][sw[j]] += w; }); });
  out.forEach((row, t) => row.forEach((_, j) => { row[j] /= Math.max(count[t], 1); }));
  const label = (pieces, ids, n) => Array.from({ length: n }, (_, k) => pieces.filter((_, i) => ids[i] === k).join("").replace(/\\u2581/g, ""));
  return { m: out, src: label(srcPieces, sw, S), out: label(outPieces, ow, T) };
}

function heatmap(o) {
  let src = o.sp, outp = o.op, m = dense(o.att, o.op.length, o.sp.length);
  if ($("words").checked) ({ m, src, out: outp } = mergeWords(m, o.sp, o.op));
  const table = el("table", { class: "heat" });
  const head = el("tr");
  head.appendChild(el("th"));
  src.forEach((p, j) => head.appendChild(el("th", { class: "src", "data-col": j }, p)));
  table.appendChild(head);
  const showValues = $("values").checked;
  m.forEach((row, t) => {
    const tr = el("tr");
    tr.appendChild(el("th", { class: "out", "data-row": t }, outp[t]));
    row.forEach((w, j) => {
      const pct = Math.round(100 * w);
      const td = el("td", { "data-row": t, "data-col": j, title: outp[t] + " → " + src[j] + ": " + pct + " %" }, showValues && pct ? String(pct) : "");
      td.style.background = "rgba(40, 60, 160, " + Math.min(1, w).toFixed(3) + ")";
      if (w > 0.55) td.classList.add("v");
      tr.appendChild(td);
    });
    table.appendChild(tr);
  });
  const mark = (attr, k, on) => {
    table.querySelectorAll("td[" + attr + '="' + k + '"]').forEach((td) => {
      if (!on) { td.classList.remove("hl"); return; }
      const w = m[+td.dataset.row][+td.dataset.col];
      if (w >= 0.1) td.classList.add("hl");
    });
    table.querySelectorAll("th[" + attr + '="' + k + '"]').forEach((th) => th.classList.toggle("on", on));
    // the other axis: the pieces that share the marked mass
    if (attr === "data-row") m[k].forEach((w, j) => table.querySelector('th[data-col="' + j + '"]').classList.toggle("on", on && w >= 0.1));
    else m.forEach((row, t) => table.querySelector('th[data-row="' + t + '"]').classList.toggle("on", on && row[k] >= 0.1));
  };
  table.addEventListener("mouseover", (e) => {
    const t = e.target.closest("[data-row],[data-col]");
    if (!t) return;
    if (t.tagName === "TH" && t.dataset.row !== undefined) mark("data-row", +t.dataset.row, true);
    else if (t.tagName === "TH" && t.dataset.col !== undefined) mark("data-col", +t.dataset.col, true);
  });
  table.addEventListener("mouseout", (e) => {
    const t = e.target.closest("[data-row],[data-col]");
    if (!t) return;
    if (t.tagName === "TH" && t.dataset.row !== undefined) mark("data-row", +t.dataset.row, false);
    else if (t.tagName === "TH" && t.dataset.col !== undefined) mark("data-col", +t.dataset.col, false);
  });
  return table;
}

function select(i) {
  selected = i;
  document.querySelectorAll("#sentences tr.row").forEach((tr) => tr.classList.toggle("selected", +tr.dataset.index === i));
  drawDetail();
}

function drawDetail() {
  const views = $("views");
  if (selected === null) { views.replaceChildren(); return; }
  const s = DATA.sentences[selected];
  $("detail-title").textContent = "Attention · sentence " + selected + (s.split ? " (" + s.split + ")" : "");
  const parts = [];
  const info = el("div", { class: "view" });
  info.appendChild(el("div", {}, "source: " + s.src));
  if (s.ref !== undefined) info.appendChild(el("div", {}, "reference: " + s.ref));
  parts.push(info);
  DATA.models.forEach((model, k) => {
    const o = s.out[k];
    const view = el("div", { class: "view" });
    const stats = [o.chrf !== undefined ? "chrF " + fmt(o.chrf) : null,
      o.ent !== undefined ? "entropy " + fmt(o.ent, 2) + " nats" : null,
      o.diag !== undefined ? "distance from the diagonal " + fmt(o.diag, 2) : null].filter(Boolean).join(" · ");
    view.appendChild(el("h3", {}, model.name + (stats ? " — " + stats : "")));
    view.appendChild(el("div", {}, o.hyp));
    view.appendChild(o.att ? heatmap(o) : el("div", { class: "muted" }, "no attention (attention=none): the decoder reads one fixed summary of the source"));
    parts.push(view);
  });
  views.replaceChildren(...parts);
}

function init() {
  drawSummary();
  const splits = [...new Set(DATA.sentences.map((s) => s.split).filter(Boolean))];
  splits.forEach((s) => $("split").appendChild(el("option", { value: s }, s)));
  ["q", "split", "minlen", "maxlen", "minscore", "maxscore"].forEach((id) => $(id).addEventListener("input", drawTable));
  ["words", "values"].forEach((id) => $(id).addEventListener("change", drawDetail));
  if (!hasRef) { $("minscore").parentNode.style.display = "none"; $("maxscore").parentNode.style.display = "none"; }
  drawTable();
  const wanted = location.hash.match(/sentence=(\\d+)/);  // explorer.html#sentence=12 opens on sentence 12
  if (DATA.sentences.length) select(wanted ? Math.min(+wanted[1], DATA.sentences.length - 1) : 0);
  document.body.dataset.ready = "1";
}
init();
</script>
</body>
</html>
"""
)
