// The explorer page, a Transformer's attention modules (seq2seq.explorer inlines it between explorer.js and
// steps.js, in one script): the module picker (every layer's encoder-decoder attention, the encoder's and
// the decoder's self-attention), each module's record in the shape the heatmap, playback, step panel and
// training slider read, and the step panel's lines that differ by module. LSTM models pass through unchanged.

const CAUSAL = "The decoder's self-attention is causal: the step that writes output piece t reads the decoder's inputs " +
  "up to its own (<s>, then the pieces written before it), so the scores of later positions are set to −∞ before the " +
  "softmax and their weights are exactly 0. A score of −∞ has no number to show, so the page keeps this module's " +
  "weights, not its scores: there is no softmax to redo by hand here.";

function layered(model) { return Boolean(model && model.attention && model.attention.type === "transformer"); }

function reportedModule(a) { return "decoder." + (a.layers.decoder - 1) + ".cross"; }

function moduleNames(a) {
  // the picker's order: encoder-decoder attention by layer, then the encoder's and the decoder's self-attention
  const names = [];
  for (let l = 0; l < a.layers.decoder; l++) names.push("decoder." + l + ".cross");
  for (let l = 0; l < a.layers.encoder; l++) names.push("encoder." + l + ".self");
  for (let l = 0; l < a.layers.decoder; l++) names.push("decoder." + l + ".self");
  return names;
}

function moduleKind(name) {
  // "cross" (output × source), "self" (source × source), "causal" (output × the decoder's inputs)
  const [side, , kind] = name.split(".");
  return kind === "cross" ? "cross" : side === "encoder" ? "self" : "causal";
}

function moduleLabel(name, a) {
  const l = +name.split(".")[1] + 1, kind = moduleKind(name);
  if (kind === "cross") return "cross-attention layer " + l + " of " + a.layers.decoder + (name === reportedModule(a) ? " (last: what decoding reports)" : "");
  if (kind === "self") return "encoder self-attention layer " + l + " of " + a.layers.encoder;
  return "decoder self-attention layer " + l + " of " + a.layers.decoder;
}

function modulePicker() {
  // shown only where a model is a Transformer: every module of the deepest one, the reported one first chosen
  const a = DATA.models.filter(layered).map((m) => m.attention)
    .sort((x, y) => moduleNames(y).length - moduleNames(x).length)[0];
  if (!a) return;
  moduleNames(a).forEach((name) => $("module").appendChild(el("option", { value: name }, moduleLabel(name, a))));
  $("module").value = reportedModule(a);
  $("module-pick").hidden = false;
}

function moduleOf(model, o) {
  // the chosen module of a record (a page's, or a slider frame's): its pieces as rows and columns, its mean
  // (att) and heads (scores where stored, else weights); {missing: true} where the record keeps only the reported one
  if (!layered(model) || !o) return o;
  const a = model.attention, name = $("module").value || reportedModule(a);
  const label = moduleLabel(name, a), kind = moduleKind(name);
  if (name === reportedModule(a)) return { ...o, module: name, label, kind };
  const m = o.modules && o.modules[name];
  if (!m) return { ...o, module: name, label, kind, missing: true };
  const heads = m.head_scores || (m.heads && m.heads.map((att) => ({ att })));
  const cols = kind === "cross" ? o.sp : kind === "self" ? o.sp : ["<s>", ...o.op.slice(0, -1)];
  const rows = kind === "self" ? o.sp : o.op;
  return { hyp: o.hyp, chrf: o.chrf, sp: cols, op: rows, att: m.att, heads, module: name, label, kind };
}

function ranges(list) {
  // [0, 1, 2, 5] -> "0–2, 5"
  const out = [];
  list.forEach((i, k) => { if (k && i === list[k - 1] + 1) out[out.length - 1][1] = i; else out.push([i, i]); });
  return out.map(([x, y]) => (x === y ? String(x) : x + "–" + y)).join(", ");
}

function missingNote(o, k) {
  const full = DATA.sentences.map((s, i) => (s.out[k] && s.out[k].modules ? i : -1)).filter((i) => i >= 0);
  return "This sentence keeps only the last layer's cross-attention (to keep the page small), not " + o.label + ". " +
    (full.length ? "Every module is kept for sentence" + (full.length > 1 ? "s " : " ") + ranges(full) + "." : "No sentence of this page keeps the other modules.");
}

function moduleNote(o, k) {
  // one line below the playback: what the chosen module's rows and columns are, or why it is not on screen
  if (!o || !o.module) return "";
  if (o.missing) return missingNote(o, k);
  if (o.kind === "self") return o.label + ": rows and columns are both the source pieces: each source position attends to every source position (the source attends to itself).";
  if (o.kind === "causal") return o.label + ": rows are the output steps, columns the decoder's inputs (<s>, then the output so far); every weight above the diagonal is 0, the future being masked.";
  return o.label + ": rows are the output steps, columns the source pieces.";
}

function showModuleNote(o, k) {
  const text = moduleNote(o, k);
  $("module-note").textContent = text;
  $("module-note").hidden = !text;
}

// -- the step panel's lines that differ by module ----------------------------------------------

function meanNote(a, o) {
  if (!layered({ attention: a })) return "The mean over the " + o.heads.length + " heads (what decoding reads) is no single softmax: choose a head above to see its query, scores and softmax.";
  return "The mean over the " + o.heads.length + " heads is a summary, no single softmax (each head's context goes through W_O): choose a head above to see its query, scores and softmax.";
}

function queryLine(a, o) {
  if (!o.kind || o.kind === "cross") return "query q = " + (o.kind ? o.label + ": " : "") + a.query;
  return "query q = " + o.label + ": " + a.self_query[o.kind === "self" ? "encoder" : "decoder"];
}

function headFormula(a, o) {
  const self = o.kind === "self" || o.kind === "causal";
  return { formula: (self && a.self_formula) || a.head_formula, values: (self && a.self_values) || a.head_values };
}

function causalLines(a, o, r) {
  // the decoder's self-attention: weights only (the future's scores are −∞), row r over the decoder's inputs
  const which = o.head === undefined ? "the mean of the " + (o.heads ? o.heads.length : 1) + " heads" : "head " + (o.head + 1) + " of " + o.heads.length;
  const lines = [el("div", { class: "scores-kind weights-only" }, "Weights only (" + which + "): " + CAUSAL),
    el("div", {}, queryLine(a, o))];
  const table = el("table", { class: "steps" }), head = el("tr");
  ["i", "key (decoder input)", "weight w_i"].forEach((h, k) => head.appendChild(el("th", k === 1 ? { class: "key" } : {}, h)));
  table.appendChild(head);
  const row = new Map((rowsOf(o) || [])[r] || []);
  o.sp.forEach((piece, j) => {
    const future = j > r, tr = el("tr", { "data-col": j, class: future ? "omitted future" : "" });
    [String(j), piece, future ? "0 (masked: −∞)" : num(row.get(j) || 0, 3)].forEach((c, k) => tr.appendChild(el("td", { class: ["i", "key", "weight"][k] }, c)));
    table.appendChild(tr);
  });
  lines.push(table);
  return lines;
}

function trainingRecord(s, f) {
  // a slider frame as the first model's chosen module: that module where this validation's history keeps it,
  // else the reported one, with a line saying which is shown
  const model = DATA.models[0], base = { sp: s.sp, op: f.op, hyp: f.hyp, att: f.att, heads: f.heads && f.heads.map((att) => ({ att })), modules: f.modules };
  const o = moduleOf(model, base);
  if (!o || !o.module) return { o, notes: [] };
  const shown = o.missing ? { ...base, module: reportedModule(model.attention), label: moduleLabel(reportedModule(model.attention), model.attention), kind: "cross" } : o;
  const text = o.missing ? "This page's training history holds only the last layer's cross-attention at this validation, not " + o.label + ": showing " + shown.label + "."
    : "Showing " + o.label + " (chosen with \"attention:\" above the playback).";
  return { o: shown, notes: [el("div", { id: "train-module", class: "which-module" }, text)] };
}
