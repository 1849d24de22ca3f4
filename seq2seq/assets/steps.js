// The explorer page, second part (seq2seq.explorer inlines it after explorer.js, in one script):
// playback, the step panel, the selected sentence, the training slider, the head picker and start-up.

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

function flow(mx, attends, kind) {
  // source labels on top, output labels below, one line per source label from the current output (a
  // Transformer's self-attention: the keys on top, the queries below; the encoder's has no future)
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
  const axes = { self: ["source (keys)", "source (queries)"], causal: ["decoder inputs (keys)", "output (queries)"] }[kind] || ["source", "output"];
  svgNode(svg, "text", { x: 2, y: 32, "font-size": 10, fill: "#777" }, axes[0]);
  svgNode(svg, "text", { x: 2, y: H - 26, "font-size": 10, fill: "#777" }, axes[1]);
  wrap.appendChild(svg);
  const show = (t) => {
    outText.forEach((node, k) => {
      node.setAttribute("class", "out" + (k > t && kind !== "self" ? " future" : k === t ? " now" : ""));
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
    title.textContent = "Inside " + (o.kind === "self" ? "source position " : "step ") + (r + 1) + ": " + (o.kind === "self" ? "source " : "output ") + JSON.stringify(o.op[r].replace(/\u2581/g, " ").trim() || o.op[r]) + " — query, scores, softmax, context";
    body.replaceChildren(...panelLines(model.attention, o, r));
  };
  return { node: box, show };
}

function panelLines(a, o, r) {
  const muted = (text) => el("div", { class: "muted" }, text);
  if (a && o.kind === "causal") return causalLines(a, o, r);
  if (a && o.heads && o.head === undefined) return [muted(meanNote(a, o))];
  if (!a) return [muted("attention=none: no query, no scores — the decoder reads one fixed summary of the source.")];
  if (!o.sa) return [muted(a.no_scores || "This page keeps this sentence's attention weights but not the raw scores the panel starts from (a page written before the step panel).")];
  const row = o.sa[r], m = o.m[r], Z = zOf(o, r), S = o.sp.length, full = isFull(row, o);
  const lines = [el("div", { class: "scores-kind " + (full ? "full" : "compressed") }, full
    ? "Every score of this step is stored (all " + S + " positions): the softmax of the scores below gives the weights below, to the digits shown."
    : "Compressed: only the scores of weights of 2 % and more are stored (" + row.length / 2 + " of " + S + " positions). Z still counts the others, so a softmax over the shown scores alone would overstate the weights." + (DATA.scores_note ? " " + DATA.scores_note : ""))];
  lines.push(el("div", { class: "query" }, queryLine(a, o)));
  if (o.head !== undefined) {
    const f = headFormula(a, o);
    lines.push(el("div", { class: "formula" }, "head " + (o.head + 1) + " of " + o.heads.length + ":   " + f.formula + (a.d ? ",   d = " + a.d : "")));
    lines.push(muted("(" + f.values + ")"));
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

function viewTitle(model, o) {
  // the model, the module (a Transformer's), the head, and the sentence's numbers for what is shown
  if (o.missing) return model.name + " · " + o.label;
  const stats = [o.chrf !== undefined ? "chrF " + fmt(o.chrf) : null,
    o.ent !== undefined ? "entropy " + fmt(o.ent, 2) + " nats" : null,
    o.diag !== undefined ? "distance from the diagonal " + fmt(o.diag, 2) : null].filter(Boolean).join(" · ");
  const which = o.heads ? (o.head === undefined ? " · mean of " + o.heads.length + " heads" : " · head " + (o.head + 1) + " of " + o.heads.length) : "";
  return model.name + (o.label ? " · " + o.label : "") + which + (stats ? " — " + stats : "");
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
    const o = headOf(moduleOf(model, s.out[k]));
    if (k === 0 || o.module) showModuleNote(o, k);
    const view = el("div", { class: "view", "data-model": k });
    view.appendChild(el("h3", {}, viewTitle(model, o)));
    view.appendChild(el("div", {}, o.hyp));
    if (o.missing) {
      view.appendChild(el("div", { class: "muted module-missing" }, missingNote(o, k)));
      player.views.push({ rows: o.op.length, show: () => {} });
      parts.push(view);
      return;
    }
    const mx = matrixOf(o);
    const attends = Boolean(o.att || o.sa);
    const f = flow(mx, attends, o.kind);
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
    const { o: chosen, notes } = trainingRecord(s, f), o = headOf(chosen);
    const which = !o.heads ? notes : [...notes, el("div", { id: "train-head", class: "which-head" }, o.head === undefined
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
  $("module").addEventListener("change", draw);
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
  modulePicker();
  drawSummary();
  const splits = [...new Set(DATA.sentences.map((s) => s.split).filter(Boolean))];
  splits.forEach((s) => $("split").appendChild(el("option", { value: s }, s)));
  ["q", "split", "minlen", "maxlen", "minscore", "maxscore"].forEach((id) => $(id).addEventListener("input", drawTable));
  ["words", "values", "head", "module"].forEach((id) => $(id).addEventListener("change", () => { const t = player.t; drawDetail(); setStep(t); }));
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
