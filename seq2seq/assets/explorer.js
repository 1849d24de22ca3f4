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

// -- playback: the output written step by step, links to where each step looks ---------------

const SVG = "http://www.w3.org/2000/svg";
const player = { t: 0, timer: null, views: [] };

function svgNode(parent, tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  parent.appendChild(n);
  return n;
}

function short(label) { const s = label.replace(/\u2581/g, ""); return s.length > 9 ? s.slice(0, 8) + "…" : s || "␣"; }

function flow(mx, attends) {
  // source labels on top, output labels below, one line per source label from the current output
  const gap = 58, n = Math.max(mx.src.length, mx.out.length, 1), W = 24 + gap * n, H = 150;
  const wrap = el("div", { class: "flow-wrap" });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "flow"); svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "attention of the current output step");
  const sx = (j) => 12 + gap * (j + 0.5) + (gap * (n - mx.src.length)) / 2;
  const ox = (t) => 12 + gap * (t + 0.5) + (gap * (n - mx.out.length)) / 2;
  const links = svgNode(svg, "g", { class: "links" });
  const srcText = mx.src.map((p, j) => svgNode(svg, "text", { class: "src", x: sx(j), y: 18, "data-col": j }, short(p)));
  const outText = mx.out.map((p, t) => svgNode(svg, "text", { class: "out future", x: ox(t), y: H - 10, "data-row": t }, short(p)));
  svgNode(svg, "text", { x: 2, y: 32, "font-size": 10, fill: "#777" }, "source");
  svgNode(svg, "text", { x: 2, y: H - 26, "font-size": 10, fill: "#777" }, "output");
  wrap.appendChild(svg);
  const show = (t) => {
    outText.forEach((node, k) => {
      node.setAttribute("class", "out" + (k > t ? " future" : k === t ? " now" : ""));
    });
    srcText.forEach((node) => node.setAttribute("class", "src"));
    links.replaceChildren();
    if (!attends || t < 0 || t >= mx.m.length) return;
    const row = mx.m[t], peak = argmax(row);
    row.forEach((w, j) => {
      if (w <= 0) return;
      svgNode(links, "line", {
        class: "link", x1: ox(t), y1: H - 26, x2: sx(j), y2: 24,
        "stroke-width": (1 + 5 * w).toFixed(2), "stroke-opacity": w.toFixed(3), "data-col": j, "data-w": w.toFixed(3),
      }).appendChild(document.createElementNS(SVG, "title")).textContent = mx.out[t] + " → " + mx.src[j] + ": " + (100 * w).toFixed(1) + " %";
    });
    srcText[peak].setAttribute("class", "src peak");
  };
  return { node: wrap, show };
}

function setStep(t) {
  const last = Math.max(0, ...player.views.map((v) => v.rows - 1));
  player.t = Math.max(0, Math.min(t, last));
  player.views.forEach((v) => v.show(Math.min(player.t, v.rows - 1)));
  $("step-label").textContent = player.views.length ? "step " + (player.t + 1) + " of " + (last + 1) : "";
  if (player.t >= last) stop();
}

function stop() {
  if (player.timer !== null) clearInterval(player.timer);
  player.timer = null;
  $("play").textContent = "▶ play";
}

function play() {
  if (player.timer !== null) { stop(); return; }
  const last = Math.max(0, ...player.views.map((v) => v.rows - 1));
  if (player.t >= last) setStep(0);
  $("play").textContent = "❚❚ pause";
  player.timer = setInterval(() => setStep(player.t + 1), 900 / +$("speed").value);
}

// -- inside one step: the lesson's query, scores, softmax and context on the model's numbers --

function num(x, digits) { return Number(x).toFixed(digits); }

function panel(model, o, mx) {
  const box = el("details", { class: "panel", open: "" });
  const title = el("summary");
  box.appendChild(title);
  const body = el("div");
  box.appendChild(body);
  const show = (t) => {
    const r = mx.pieceOf[t];  // the piece row behind displayed row t
    title.textContent = "Inside step " + (r + 1) + ": output " + JSON.stringify(o.op[r].replace(/\u2581/g, " ").trim() || o.op[r]) + " — query, scores, softmax, context";
    body.replaceChildren(...panelLines(model.attention, o, r));
  };
  return { node: box, show };
}

function panelLines(a, o, r) {
  const muted = (text) => el("div", { class: "muted" }, text);
  if (a && o.heads && o.head === undefined) return [muted("The mean over the " + o.heads.length + " heads (what decoding reads) is no single softmax: choose a head above to see its query, scores and softmax.")];
  if (!a) return [muted("attention=none: no query, no scores — the decoder reads one fixed summary of the source.")];
  if (!o.sa) return [muted(a.no_scores || "This page keeps this sentence's attention weights but not the raw scores the panel starts from (a page written before the step panel).")];
  const row = o.sa[r], m = o.m[r], Z = zOf(o, r), S = o.sp.length, full = isFull(row, o);
  const lines = [el("div", { class: "scores-kind " + (full ? "full" : "compressed") }, full
    ? "Every score of this step is stored (all " + S + " positions): the softmax of the scores below gives the weights below, to the digits shown."
    : "Compressed: only the scores of weights of 2 % and more are stored (" + row.length / 2 + " of " + S + " positions). Z still counts the others, so a softmax over the shown scores alone would overstate the weights." + (DATA.scores_note ? " " + DATA.scores_note : ""))];
  lines.push(el("div", {}, "query q = " + a.query));
  if (o.head !== undefined) {
    lines.push(el("div", { class: "formula" }, "head " + (o.head + 1) + " of " + o.heads.length + ":   " + a.head_formula + (a.d ? ",   d = " + a.d : "")));
    lines.push(muted("(" + a.head_values + ")"));
  } else lines.push(el("div", { class: "formula" }, a.formula + (a.d ? ",   d = " + a.d : "")));
  lines.push(el("div", { class: "formula" }, "softmax: w_i = exp(s_i − m) / Z,   m = max_j s_j = " + num(m, 3) + ",   Z = Σ_j exp(s_j − m) over all " + S + " positions = " + num(Z, 4)));
  const sum = scoreTable(o, r, Z);
  lines.push(sum.table);
  if (sum.omitted.length) {
    lines.push(el("div", { class: "muted omitted-note" }, "Scores not stored for the " + sum.omitted.length + " position(s) with weights under 2 % (to keep the page small): " +
      sum.omitted.join(", ") + ". Their exp(s_j − m) add up to Z − " + num(sum.storedZ, 4) + " = " + num(Math.max(0, Z - sum.storedZ), 4) + ", weight " + num(Math.max(0, 1 - sum.mass), 3) + " together."));
  }
  lines.push(el("div", { class: "formula context" }, contextLine(o, r, sum)));
  if ($("words").checked) lines.push(muted("Words view: the panel shows the word's first piece; untick words to step piece by piece."));
  return lines;
}

function scoreTable(o, r, Z) {
  // one line per source position: score, exp(s_i − m), weight, ‖v_i‖ and the weight's share of it
  const row = o.sa[r], m = o.m[r], stored = new Map();  // column -> thousandths below the largest score
  for (let k = 0; k < row.length; k += 2) stored.set(row[k], row[k + 1]);
  const table = el("table", { class: "steps" });
  const head = el("tr");
  ["i", "key (source piece)", "score s_i", "exp(s_i − m)", "weight w_i", "‖v_i‖", "w_i·‖v_i‖"].forEach((h, k) => head.appendChild(el("th", k === 1 ? { class: "key" } : {}, h)));
  table.appendChild(head);
  const sum = { table, share: 0, storedZ: 0, mass: 0, omitted: [] };
  let peak = -1;
  o.sp.forEach((piece, j) => {
    const d = stored.get(j);
    const tr = el("tr", d !== undefined ? { "data-col": j } : { class: "omitted", "data-col": j });
    let cells;
    if (d === undefined) {
      sum.omitted.push(j);
      cells = [String(j), piece, "–", "–", "< 0.02", num(o.vn[j], 2), "–"];
    } else {
      const e = Math.exp(-d / 1000), w = e / Z;
      if (d === 0 && peak < 0) { peak = j; tr.classList.add("peak"); }
      sum.share += w * o.vn[j]; sum.storedZ += e; sum.mass += w;
      cells = [String(j), piece, num(m - d / 1000, 3), num(e, 4), num(w, 3), num(o.vn[j], 2), num(w * o.vn[j], 3)];
    }
    cells.forEach((c, k) => {
      const td = el("td", k === 1 ? { class: "key" } : {}, c);
      td.classList.add(["i", "key", "score", "exp", "weight", "norm", "share"][k]);
      tr.appendChild(td);
    });
    table.appendChild(tr);
  });
  return sum;
}

function contextLine(o, r, sum) {
  // ‖c‖ ≤ Σ_i w_i·‖v_i‖ (the triangle inequality), printed only where the numbers shown bear it out
  const c = num(o.cn[r], 2), share = num(sum.share, 2), head = "context c = Σ_i w_i v_i:   ‖c‖ = " + c;
  if (sum.omitted.length) {
    const rest = Math.max(0, 1 - sum.mass), norms = sum.omitted.map((j) => o.vn[j]);
    return head + ";   Σ_i w_i·‖v_i‖ over the stored positions = " + share + ", and the " + sum.omitted.length +
      " others (weight " + num(rest, 3) + " together) add between " + num(rest * Math.min(...norms), 2) + " and " + num(rest * Math.max(...norms), 2);
  }
  if (+c < +share) return head + "  ≤  Σ_i w_i·‖v_i‖ = " + share + " — the values point different ways, so the mix is shorter than the sum of its shares";
  return head + ",   Σ_i w_i·‖v_i‖ = " + share + " — equal up to rounding (the norms are stored to 0.01): the weight sits on one position, or on values that point the same way";
}

// -- the selected sentence ----------------------------------------------------------------------

function select(i) {
  selected = i;
  document.querySelectorAll("#sentences tr.row").forEach((tr) => tr.classList.toggle("selected", +tr.dataset.index === i));
  drawDetail();
  setStep(0);
}

function drawDetail() {
  const views = $("views");
  stop();
  player.views = [];
  if (selected === null) { views.replaceChildren(); return; }
  const s = DATA.sentences[selected];
  $("detail-title").textContent = "Attention · sentence " + selected + (s.split ? " (" + s.split + ")" : "");
  const parts = [];
  const info = el("div", { class: "view" });
  info.appendChild(el("div", {}, "source: " + s.src));
  if (s.ref !== undefined) info.appendChild(el("div", {}, "reference: " + s.ref));
  parts.push(info);
  DATA.models.forEach((model, k) => {
    const o = headOf(s.out[k]);
    const view = el("div", { class: "view", "data-model": k });
    const stats = [o.chrf !== undefined ? "chrF " + fmt(o.chrf) : null,
      o.ent !== undefined ? "entropy " + fmt(o.ent, 2) + " nats" : null,
      o.diag !== undefined ? "distance from the diagonal " + fmt(o.diag, 2) : null].filter(Boolean).join(" · ");
    const which = o.heads ? (o.head === undefined ? " · mean of " + o.heads.length + " heads" : " · head " + (o.head + 1) + " of " + o.heads.length) : "";
    view.appendChild(el("h3", {}, model.name + which + (stats ? " — " + stats : "")));
    view.appendChild(el("div", {}, o.hyp));
    const mx = matrixOf(o);
    const attends = Boolean(o.att || o.sa);
    const f = flow(mx, attends);
    view.appendChild(f.node);
    const parts2 = [f];
    if (attends) {
      const table = heatmap(o, mx);
      view.appendChild(table);
      parts2.push({ show: (t) => markStep(table, mx.m, t) });
      const p = panel(model, o, mx);
      view.appendChild(p.node);
      parts2.push(p);
    } else {
      view.appendChild(el("div", { class: "muted" }, "no attention (attention=none): the decoder reads one fixed summary of the source, so playback writes the output without links"));
    }
    player.views.push({ rows: mx.out.length, show: (t) => parts2.forEach((x) => x.show(t)) });
    parts.push(view);
  });
  views.replaceChildren(...parts);
}

// -- alignments over training: the fixed validation sentences at every validation -------------

const training = { k: 0, timer: null };

function drawTraining() {
  const body = $("training-body");
  const H = DATA.history;
  if (!H || !H.steps.length) {
    body.replaceChildren(el("div", { class: "muted", id: "history-note" }, DATA.history_note || "No training history on this page."));
    return;
  }
  const controls = el("div", { class: "player" });
  const pick = el("select", { id: "train-sentence" });
  H.sentences.forEach((s, i) => pick.appendChild(el("option", { value: i }, "valid " + i + ": " + (s.src.length > 50 ? s.src.slice(0, 49) + "…" : s.src))));
  const slider = el("input", { id: "train-step", type: "range", min: 0, max: H.steps.length - 1, step: 1, value: H.steps.length - 1 });
  const go = el("button", { id: "train-play", title: "play the validations in order" }, "▶ play");
  const label = el("span", { id: "train-label", class: "label" });
  controls.append(el("label", {}, "sentence "), pick, go, slider, label);
  const frame = el("div", { class: "frame", id: "train-frame" });
  const note = el("div", { class: "legend" }, "Drag the slider to a validation: the heatmap shows that step's greedy output and its attention, from the first validation to the last." + (DATA.history_note ? " " + DATA.history_note : ""));
  body.replaceChildren(note, controls, frame);
  const draw = () => {
    training.k = +slider.value;
    const i = +pick.value, s = H.sentences[i], f = H.frames[training.k][i];
    label.textContent = "step " + H.steps[training.k] + " (validation " + (training.k + 1) + " of " + H.steps.length + ")";
    const o = headOf({ sp: s.sp, op: f.op, att: f.att, heads: f.heads && f.heads.map((att) => ({ att })) });
    const which = !o.heads ? [] : [el("div", { id: "train-head", class: "which-head" }, o.head === undefined
      ? "Showing the mean of the " + o.heads.length + " heads (what decoding reads); pick one head with \"heads:\" above the playback."
      : "Showing head " + (o.head + 1) + " of " + o.heads.length + " (chosen with \"heads:\" above the playback).")];
    frame.replaceChildren(...which, el("div", {}, "source: " + s.src), el("div", {}, "output: " + f.hyp), heatmap(o));
  };
  const halt = () => { if (training.timer !== null) clearInterval(training.timer); training.timer = null; go.textContent = "▶ play"; };
  go.addEventListener("click", () => {
    if (training.timer !== null) { halt(); return; }
    if (+slider.value >= H.steps.length - 1) slider.value = 0;
    draw();
    go.textContent = "❚❚ pause";
    training.timer = setInterval(() => {
      if (+slider.value >= H.steps.length - 1) { halt(); return; }
      slider.value = +slider.value + 1;
      draw();
    }, 700);
  });
  slider.addEventListener("input", () => { halt(); draw(); });
  pick.addEventListener("change", draw);
  $("words").addEventListener("change", draw);
  $("values").addEventListener("change", draw);
  $("head").addEventListener("change", draw);
  draw();
}

function headPicker() {
  // multi-head models: "mean of heads" (what decoding reads) or one head; hidden for one-head pages
  const counts = DATA.models.map((m) => (m.attention && m.attention.heads) || 1);
  (DATA.history ? DATA.history.frames.flat() : []).forEach((f) => counts.push(f.heads ? f.heads.length : 1));
  const n = Math.max(1, ...counts);
  if (n < 2) return;
  $("head").appendChild(el("option", { value: -1 }, "mean of heads"));
  for (let h = 0; h < n; h++) $("head").appendChild(el("option", { value: h }, "head " + (h + 1)));
  $("head-pick").hidden = false;
}

function init() {
  headPicker();
  drawSummary();
  const splits = [...new Set(DATA.sentences.map((s) => s.split).filter(Boolean))];
  splits.forEach((s) => $("split").appendChild(el("option", { value: s }, s)));
  ["q", "split", "minlen", "maxlen", "minscore", "maxscore"].forEach((id) => $(id).addEventListener("input", drawTable));
  ["words", "values", "head"].forEach((id) => $(id).addEventListener("change", () => { const t = player.t; drawDetail(); setStep(t); }));
  if (!hasRef) { $("minscore").parentNode.style.display = "none"; $("maxscore").parentNode.style.display = "none"; }
  $("back").addEventListener("click", () => { stop(); setStep(player.t - 1); });
  $("forward").addEventListener("click", () => { stop(); setStep(player.t + 1); });
  $("play").addEventListener("click", play);
  $("speed").addEventListener("change", () => { if (player.timer !== null) { stop(); play(); } });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || selected === null) return;
    if (e.key === "ArrowRight") { stop(); setStep(player.t + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { stop(); setStep(player.t - 1); e.preventDefault(); }
    else if (e.key === " " && !e.target.closest("button, tr")) { play(); e.preventDefault(); }
  });
  drawTable();
  drawTraining();
  // explorer.html#sentence=12&step=3 opens on sentence 12 at step 3
  const wanted = location.hash.match(/sentence=(\d+)/), step = location.hash.match(/step=(\d+)/);
  if (DATA.sentences.length) select(wanted ? Math.min(+wanted[1], DATA.sentences.length - 1) : 0);
  if (step) setStep(+step[1] - 1);
  if (!DATA.sentences.length) $("player").style.display = "none";
  document.body.dataset.ready = "1";
}
init();
