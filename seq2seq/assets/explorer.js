"use strict";
// The explorer page, first part (seq2seq.explorer inlines steps.js after it, in one script):
// the data, the summary and length chart, the sentence table, attention rows and heatmaps.
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

const FEW = 20;  // a bucket of fewer sentences is drawn faded, its count beside it: its BLEU swings widely
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
const DASHES = ["", "6 4", "1 3", "6 2 1 2"];
const DASH_NAMES = ["solid", "dashed", "dotted", "dash-dot"];

function lengthChart(splits) {
  // BLEU by source-length bucket: one polyline per model (colour) and split (line style), an inline SVG
  const series = [], seen = {};
  DATA.models.forEach((m, mi) => splits.forEach((s) => {
    const r = m.summary[s];
    if (!r || !r.buckets) return;
    const k = (seen[mi] = (seen[mi] || 0) + 1) - 1;
    series.push({ label: m.name + " · " + s, buckets: r.buckets, colour: PALETTE[mi % 6], dash: k % 4 });
  }));
  const wrap = el("div", { class: "length-chart" });
  if (!series.length) return wrap;
  const labels = series[0].buckets.map((b) => b.range);
  const W = 80 + 60 * labels.length, H = 200, top = 14, left = 40, bottom = 30;
  const max = Math.max(10, ...series.flatMap((s) => s.buckets.map((b) => b.bleu || 0)));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "BLEU by source length");
  const x = (i) => left + 30 + i * 60, y = (v) => top + (H - top - bottom) * (1 - v / max);
  svgNode(svg, "line", { x1: left, y1: y(0), x2: W - 10, y2: y(0), stroke: "#999" });
  for (let v = 0; v <= max; v += 10) svgNode(svg, "text", { x: 4, y: y(v) + 4, "font-size": 10 }, String(v));
  labels.forEach((l, i) => svgNode(svg, "text", { x: x(i) - 14, y: H - 10, "font-size": 10 }, l));
  series.forEach((s) => {
    const pts = s.buckets.map((b, i) => (b.bleu === null || b.bleu === undefined ? null : [x(i), y(b.bleu), b])).filter(Boolean);
    svgNode(svg, "polyline", { points: pts.map((p) => p[0] + "," + p[1]).join(" "), fill: "none",
      stroke: s.colour, "stroke-dasharray": DASHES[s.dash], "stroke-width": 2, "data-style": DASH_NAMES[s.dash] });
    pts.forEach(([px, py, b]) => {
      const few = b.n < FEW;
      const dot = svgNode(svg, "circle", { cx: px, cy: py, r: few ? 4 : 3, fill: few ? "#fff" : s.colour, stroke: s.colour,
        "stroke-width": 1.5, opacity: few ? 0.5 : 1, class: few ? "few" : "", "data-n": b.n });
      const ci = b.ci95 ? ", 95 % interval " + fmt(b.ci95[0]) + "–" + fmt(b.ci95[1]) : "";
      svgNode(dot, "title", {}, s.label + ", " + b.range + " words: BLEU " + fmt(b.bleu) + " (" + b.n + " sentences" + ci + ")");
      if (few) svgNode(svg, "text", { x: px + 6, y: py - 5 - 10 * s.dash, "font-size": 9, fill: s.colour, class: "few-n" }, "n=" + b.n);
    });
  });
  wrap.appendChild(el("h2", {}, "BLEU by source length"));
  wrap.appendChild(svg);
  wrap.appendChild(lengthKey(series, labels));
  return wrap;
}

function lengthKey(series, labels) {
  // the legend: each line's colour and style drawn, and every bucket's sentence count
  const table = el("table", { class: "legend length-key" });
  const head = el("tr");
  head.appendChild(el("th", {}, "line"));
  head.appendChild(el("th", {}, "sentences per bucket (source words):"));
  labels.forEach((l) => head.appendChild(el("th", { class: "num" }, l)));
  table.appendChild(head);
  series.forEach((s) => {
    const tr = el("tr", { class: "series" });
    const swatch = document.createElementNS(SVG, "svg");
    swatch.setAttribute("width", 36); swatch.setAttribute("height", 10);
    svgNode(swatch, "line", { x1: 0, y1: 5, x2: 36, y2: 5, stroke: s.colour, "stroke-width": 2, "stroke-dasharray": DASHES[s.dash] });
    const key = el("td", { class: "swatch", "data-style": DASH_NAMES[s.dash] });
    key.append(swatch, " " + DASH_NAMES[s.dash]);
    tr.append(key, el("td", {}, s.label));
    s.buckets.forEach((b) => tr.appendChild(el("td", { class: "num" + (b.n === 0 ? " none" : b.n < FEW ? " few" : ""), "data-n": b.n }, String(b.n))));
    table.appendChild(tr);
  });
  const note = el("caption", {}, "Hover a point for its BLEU and 95 % interval. Hollow, faded points: buckets of fewer than " + FEW + " sentences, whose BLEU swings widely.");
  table.prepend(note);
  return table;
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

function isFull(row, o) { return row.length / 2 === o.sp.length; }

function zOf(o, t) {
  // a full row (every score stored): Z summed over the stored scores, so the softmax of the scores as
  // shown is the weights as shown; a compressed row: the stored Z, which also counts the scores left out
  const row = o.sa[t];
  if (!isFull(row, o)) return o.z[t];
  let Z = 0;
  for (let k = 1; k < row.length; k += 2) Z += Math.exp(-row[k] / 1000);
  return Z;
}

function rowsOf(o) {
  // attention rows as [[column, weight], ...]: from the raw scores (seq2seq.attention_rows.scored_rows:
  // w_j = exp(s_j - m) / Z, s_j = m - d_j / 1000), or from per-mille weights; null without attention
  if (o.sa) return o.sa.map((row, t) => {
    const out = [], Z = zOf(o, t);
    for (let k = 0; k < row.length; k += 2) out.push([row[k], Math.exp(-row[k + 1] / 1000) / Z]);
    return out;
  });
  if (o.att) return o.att.map((row) => row.map(([j, p]) => [j, p / 1000]));
  return null;
}

function headOf(o) {
  // a multi-head record (o.heads) as the head picker shows it: one head's rows and panel numbers,
  // or the record itself (its rows are the mean over heads)
  const h = +$("head").value;
  if (!o || !o.heads || !(h >= 0) || h >= o.heads.length) return o;
  const x = o.heads[h];
  return { ...o, att: x.att, sa: x.sa, m: x.m, z: x.z, cn: x.cn, vn: x.vn, ent: x.ent, diag: x.diag, head: h };
}

function dense(rows, T, S) {
  const m = Array.from({ length: T }, () => new Array(S).fill(0));
  (rows || []).forEach((row, t) => row.forEach(([j, w]) => { if (t < T && j < S) m[t][j] = w; }));
  return m;
}

function wordsOf(pieces) {
  // SentencePiece marks a word's first piece with U+2581; </s> stays a word of its own
  const ids = [];
  let w = -1;
  pieces.forEach((p, i) => { if (i === 0 || p.startsWith("\u2581") || p === "</s>" || pieces[i - 1] === "</s>") w++; ids.push(w); });
  return ids;
}

function mergeWords(m, srcPieces, outPieces) {
  const sw = wordsOf(srcPieces), ow = wordsOf(outPieces);
  const S = Math.max(...sw) + 1, T = Math.max(...ow) + 1;
  const out = Array.from({ length: T }, () => new Array(S).fill(0)), count = new Array(T).fill(0);
  m.forEach((row, t) => { count[ow[t]]++; row.forEach((w, j) => { out[ow[t]][sw[j]] += w; }); });
  out.forEach((row, t) => row.forEach((_, j) => { row[j] /= Math.max(count[t], 1); }));
  const label = (pieces, ids, n) => Array.from({ length: n }, (_, k) => pieces.filter((_, i) => ids[i] === k).join("").replace(/\u2581/g, ""));
  return { m: out, src: label(srcPieces, sw, S), out: label(outPieces, ow, T) };
}

// -- one matrix of a record: pieces, or words with the "words" toggle -------------------------

function matrixOf(o) {
  // {m: dense weights (rows x columns), src, out: labels, rowOf: piece row -> displayed row, pieceOf: displayed row -> first piece row}
  const m = dense(rowsOf(o), o.op.length, o.sp.length);
  if (!$("words").checked) {
    const ids = o.op.map((_, i) => i);
    return { m, src: o.sp, out: o.op, rowOf: ids, pieceOf: ids };
  }
  const merged = mergeWords(m, o.sp, o.op);
  const ow = wordsOf(o.op), pieceOf = [];
  ow.forEach((w, i) => { if (pieceOf[w] === undefined) pieceOf[w] = i; });
  return { ...merged, rowOf: ow, pieceOf };
}

function heatmap(o, mx = matrixOf(o)) {
  const { m, src, out: outp } = mx;
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
      const td = el("td", { "data-row": t, "data-col": j, "data-w": w.toFixed(3), title: outp[t] + " → " + src[j] + ": " + pct + " %" }, showValues && pct ? String(pct) : "");
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
  const hover = (on) => (e) => {
    const t = e.target.closest("[data-row],[data-col]");
    if (!t || t.tagName !== "TH") return;
    if (t.dataset.row !== undefined) mark("data-row", +t.dataset.row, on);
    else if (t.dataset.col !== undefined) mark("data-col", +t.dataset.col, on);
  };
  table.addEventListener("mouseover", hover(true));
  table.addEventListener("mouseout", hover(false));
  return table;
}

function argmax(row) { let best = 0; row.forEach((w, j) => { if (w > row[best]) best = j; }); return best; }

function markStep(table, m, t) {
  // the heatmap's row t, and its largest weight
  table.querySelectorAll(".cur, .peak").forEach((n) => n.classList.remove("cur", "peak"));
  if (t < 0 || t >= m.length) return;
  const j = argmax(m[t]);
  table.querySelectorAll('td[data-row="' + t + '"]').forEach((td) => td.classList.add("cur"));
  const head = table.querySelector('th[data-row="' + t + '"]');
  if (head) head.classList.add("cur");
  const peak = table.querySelector('td[data-row="' + t + '"][data-col="' + j + '"]');
  if (peak) peak.classList.add("peak");
  const col = table.querySelector('th[data-col="' + j + '"]');
  if (col) col.classList.add("peak");
}

