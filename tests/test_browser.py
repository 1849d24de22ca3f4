"""The explorer in a real browser: Debian's Chromium, driven by Playwright (``make test-browser``).

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and the
``playwright`` Python package (a dev dependency; it drives the system Chromium, it downloads no
browser). Each page is opened from disk as a file; every request the page makes is recorded, and
any request that is not the page itself, any script error and any console error fails the test.
"""

import json
import math
import shutil

import pytest

from seq2seq.evaluate import evaluate_run
from seq2seq.evaluate import main as evaluate_main
from seq2seq.explorer import read_page_data, weights_of
from seq2seq.history import HISTORY_FILE

pytestmark = pytest.mark.browser


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert found, "no Chromium on PATH: install it (Debian: apt-get install chromium) to run make test-browser"
    return found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Opened:
    """A page opened from disk, with what it asked of the network and what went wrong in it."""

    def __init__(self, browser, path, fragment=""):
        self.url = path.resolve().as_uri()
        self.requests, self.errors = [], []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(self.url + fragment)
        self.page.wait_for_selector("body[data-ready='1']")

    def clean(self):
        """No script error, and nothing fetched but the page itself."""
        assert not self.errors, self.errors
        assert [u for u in self.requests if u.split("#")[0] != self.url] == []

    def step(self):
        text = self.page.text_content("#step-label")  # "step 3 of 12"
        return int(text.split()[1]) - 1, int(text.split()[3])

    def view(self, k=0):
        return self.page.locator(f'#views .view[data-model="{k}"]')


def dense_row(row, S):
    out = [0.0] * S
    for j, p in row:
        out[j] = p / 1000
    return out


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("browser") / "bahdanau"
    run.mkdir()
    for name in ("best.pt", "config.json", HISTORY_FILE):
        shutil.copy(trained_run / name, run / name)
    evaluate_run(run, n_heatmaps=0, bootstrap=20)
    return run


@pytest.fixture(scope="module")
def page_path(run):
    return run / "eval" / "greedy" / "explorer.html"


def pick_sentence(data, at_least=4):
    """A sentence whose output has at least ``at_least`` steps."""
    return next(i for i, s in enumerate(data["sentences"]) if len(s["out"][0]["op"]) >= at_least)


def test_the_page_renders_every_sentence_and_the_selected_heatmap(browser, page_path):
    data = read_page_data(page_path)
    pick = 7
    p = Opened(browser, page_path, f"#sentence={pick}")
    assert p.page.locator("#sentences tr.row").count() == len(data["sentences"]) == 80
    assert p.page.get_attribute("#sentences tr.selected", "data-index") == str(pick)
    out = data["sentences"][pick]["out"][0]
    heat = p.view().locator("table.heat")
    assert heat.locator("td[data-row]").count() == len(out["op"]) * len(out["sp"])
    assert heat.locator("th.src").count() == len(out["sp"]) and heat.locator("th.out").count() == len(out["op"])
    assert out["hyp"] in p.view().inner_text()
    p.clean()


def test_play_and_step_write_the_output_and_move_the_highlighted_row(browser, page_path):
    data = read_page_data(page_path)
    pick = pick_sentence(data)
    T = len(data["sentences"][pick]["out"][0]["op"])
    p = Opened(browser, page_path, f"#sentence={pick}")
    view = p.view()

    def shown():  # the output pieces written so far, and the current one
        nodes = view.locator("svg.flow text.out")
        classes = [nodes.nth(k).get_attribute("class") for k in range(nodes.count())]
        return sum("future" not in c for c in classes), [k for k, c in enumerate(classes) if "now" in c]

    def current_row():
        return {int(x) for x in view.locator("table.heat td.cur").evaluate_all("ns => ns.map(n => n.dataset.row)")}

    assert p.step() == (0, T) and shown() == (1, [0]) and current_row() == {0}
    p.page.click("#forward")
    assert p.step() == (1, T) and shown() == (2, [1]) and current_row() == {1}
    p.page.locator("body").press("ArrowRight")
    p.page.locator("body").press("ArrowRight")
    assert p.step() == (3, T) and shown() == (4, [3]) and current_row() == {3}
    p.page.locator("body").press("ArrowLeft")
    assert p.step() == (2, T) and current_row() == {2}
    p.page.click("#back")
    assert p.step() == (1, T)
    p.page.select_option("#speed", "4")
    p.page.click("#play")
    assert p.page.text_content("#play").strip().endswith("pause")
    p.page.wait_for_function(f"document.getElementById('step-label').textContent === 'step {T} of {T}'", timeout=20_000)
    assert shown() == (T, [T - 1]) and p.page.text_content("#play").strip().endswith("play")  # stops at the end
    p.clean()


def test_the_links_of_a_step_are_drawn_with_the_stored_weights(browser, page_path):
    data = read_page_data(page_path)
    pick = pick_sentence(data)
    out = data["sentences"][pick]["out"][0]
    t = 2
    p = Opened(browser, page_path, f"#sentence={pick}&step={t + 1}")
    assert p.step()[0] == t
    lines = p.view().locator("svg.flow line.link")
    drawn = {
        int(lines.nth(k).get_attribute("data-col")): float(lines.nth(k).get_attribute("stroke-opacity"))
        for k in range(lines.count())
    }
    want = weights_of(out)[t]  # the stored scores' softmax
    assert drawn.keys() == want.keys()
    assert all(abs(drawn[j] - want[j]) <= 1e-3 for j in want)
    peak = max(want, key=want.get)
    assert p.view().locator("svg.flow text.src.peak").get_attribute("data-col") == str(peak)
    assert p.view().locator("table.heat td.peak").get_attribute("data-col") == str(peak)
    p.clean()


def test_the_step_panel_shows_softmax_of_the_scores_equals_the_weights(browser, page_path):
    data = read_page_data(page_path)
    pick = pick_sentence(data)
    out = data["sentences"][pick]["out"][0]
    p = Opened(browser, page_path, f"#sentence={pick}")
    for t in range(min(4, len(out["op"]))):
        if t:
            p.page.click("#forward")
        panel = p.view().locator("details.panel")
        text = panel.inner_text()
        assert "query q = the previous decoder state s_{t-1}" in text and "vᵀ tanh(W_q q + W_k k)" in text
        Z = float(text.split("positions = ")[1].split()[0])
        m = float(text.split("m = max_j s_j = ")[1].split(",")[0])
        rows = panel.locator("table.steps tr[data-col]:not(.omitted)")
        assert rows.count() == len(out["sa"][t]) // 2
        heat = {
            int(c): float(w)
            for c, w in p.view()
            .locator(f'table.heat td[data-row="{t}"]')
            .evaluate_all("ns => ns.map(n => [n.dataset.col, n.dataset.w])")
        }
        for k in range(rows.count()):
            row = rows.nth(k)
            j = int(row.get_attribute("data-col"))
            score, weight = float(row.locator("td.score").inner_text()), float(row.locator("td.weight").inner_text())
            assert abs(math.exp(score - m) / Z - weight) <= 1e-3  # softmax(scores) = weights, from the screen
            assert abs(weight - heat[j]) <= 1e-3  # ... the heatmap's weights
        assert m == max(float(rows.nth(k).locator("td.score").inner_text()) for k in range(rows.count()))
    p.clean()


def test_the_training_slider_shows_each_validations_attention(browser, page_path):
    data = read_page_data(page_path)
    H = data["history"]
    assert H["steps"] == [20, 40, 60]
    p = Opened(browser, page_path)
    slider = p.page.locator("#train-step")
    for k in (0, 2, 1):
        slider.evaluate(f"(s) => {{ s.value = {k}; s.dispatchEvent(new Event('input')); }}")
        assert p.page.text_content("#train-label").startswith(f"step {H['steps'][k]} (validation {k + 1} of 3)")
        for i in range(len(H["sentences"])):
            p.page.select_option("#train-sentence", str(i))
            frame = H["frames"][k][i]
            cells = p.page.locator("#train-frame td[data-row]").evaluate_all(
                "ns => ns.map(n => [+n.dataset.row, +n.dataset.col, +n.dataset.w])"
            )
            S = len(H["sentences"][i]["sp"])
            want = [dense_row(row, S) for row in frame["att"]]
            assert len(cells) == len(want) * S
            assert all(abs(w - want[r][c]) <= 1e-3 for r, c, w in cells)
            assert frame["hyp"] in p.page.inner_text("#train-frame")
    p.page.click("#train-play")
    p.page.wait_for_function("document.getElementById('train-label').textContent.startsWith('step 60')", timeout=10_000)
    p.clean()


def test_a_beam_search_page_plays_the_returned_hypothesis(browser, run):
    evaluate_run(run, beam=3, n_heatmaps=0, bootstrap=20)
    path = run / "eval" / "beam3" / "explorer.html"
    data = read_page_data(path)
    pick = pick_sentence(data)
    out = data["sentences"][pick]["out"][0]
    assert len(out["sa"]) == len(out["op"])
    p = Opened(browser, path, f"#sentence={pick}")
    T = len(out["op"])
    p.page.select_option("#speed", "4")
    p.page.click("#play")
    p.page.wait_for_function(f"document.getElementById('step-label').textContent === 'step {T} of {T}'", timeout=20_000)
    assert p.view().locator("svg.flow line.link").count() == len(out["sa"][-1]) // 2
    p.clean()


@pytest.fixture(scope="module")
def none_run(corpus_root, tmp_path_factory):
    from conftest import TINY, compose
    from seq2seq.training import train

    run = tmp_path_factory.mktemp("none") / "none"
    train(compose([*TINY, "attention=none", f"data.root={corpus_root}", "train.max_steps=10"]), run)
    return run


def test_models_side_by_side_step_in_lockstep_and_none_writes_without_links(browser, run, none_run, tmp_path):
    page = tmp_path / "compare.html"
    assert evaluate_main(["--compare", str(none_run), str(run), "--bootstrap", "20", "--out", str(page)]) == 0
    data = read_page_data(page)
    pick = pick_sentence(data)
    p = Opened(browser, page, f"#sentence={pick}")
    for _ in range(2):
        p.page.click("#forward")
    none, bahdanau = p.view(0), p.view(1)
    assert none.locator("svg.flow line.link").count() == 0 and "without links" in none.inner_text()
    assert "attention=none" in none.inner_text()
    for view, k in ((none, 0), (bahdanau, 1)):
        T = len(data["sentences"][pick]["out"][k]["op"])
        now = view.locator("svg.flow text.out.now").get_attribute("data-row")
        assert int(now) == min(2, T - 1)  # the same step, each model's own output
    assert bahdanau.locator("svg.flow line.link").count() > 0
    p.clean()


def test_a_page_from_before_the_history_says_so_in_one_line(browser, tmp_path, run):
    data = read_page_data(run / "eval" / "greedy" / "explorer.html")
    data.pop("history")
    data["history_note"] = "No training history: this run has no attention_history.jsonl."
    from seq2seq.explorer import write_page

    path = write_page(tmp_path / "old.html", data)
    p = Opened(browser, path)
    assert p.page.locator("#train-step").count() == 0
    assert p.page.inner_text("#history-note").startswith("No training history")
    p.clean()


@pytest.fixture(scope="module")
def heads_run(corpus_root, tmp_path_factory):
    from conftest import TINY, compose
    from seq2seq.training import train

    run = tmp_path_factory.mktemp("heads") / "bahdanau-2heads"
    overrides = [*TINY, "attention=bahdanau", "attention.heads=2", f"data.root={corpus_root}", "train.max_steps=40"]
    train(compose(overrides), run)
    evaluate_run(run, n_heatmaps=0, bootstrap=20)
    return run


def heat_cells(p, where):
    cells = p.page.locator(f"{where} table.heat td[data-row]").evaluate_all(
        "ns => ns.map(n => [+n.dataset.row, +n.dataset.col, +n.dataset.w])"
    )
    return {(r, c): w for r, c, w in cells}


def test_a_multi_head_page_shows_the_mean_and_each_head_with_its_own_softmax(browser, heads_run):
    page_path = heads_run / "eval" / "greedy" / "explorer.html"
    data = read_page_data(page_path)
    pick = pick_sentence(data)
    out = data["sentences"][pick]["out"][0]
    p = Opened(browser, page_path, f"#sentence={pick}")
    assert p.page.is_visible("#head-pick") and p.page.locator("#player #head-pick").count() == 1  # by the playback
    assert p.page.locator("#player > :first-child").get_attribute("id") == "head-pick"  # first, not after the legend
    assert p.page.inner_text("#head-pick").startswith("heads:")
    assert p.page.locator("#head option").all_inner_texts() == ["mean of heads", "head 1", "head 2"]
    view = '#views .view[data-model="0"]'
    # the default view: the mean over heads, as the page stores it; no one softmax to show
    assert "mean of 2 heads" in p.view().locator("h3").inner_text()
    mean = heat_cells(p, view)
    for t, row in enumerate(out["att"]):
        for j, per_mille in row:
            assert abs(mean[(t, j)] - per_mille / 1000) <= 1e-3
    assert "choose a head" in p.view().locator("details.panel").inner_text()
    for h in (0, 1):
        p.page.select_option("#head", str(h))
        assert f"head {h + 1} of 2" in p.view().locator("h3").inner_text()
        cells, want = heat_cells(p, view), weights_of(out["heads"][h])
        assert all(abs(cells[(t, j)] - w) <= 1e-3 for t, row in enumerate(want) for j, w in row.items())
        text = p.view().locator("details.panel").inner_text()
        assert f"head {h + 1} of 2" in text and "v_nᵀ tanh((W_q q)_n + (W_k k)_n)" in text
        Z = float(text.split("positions = ")[1].split()[0])
        m = float(text.split("m = max_j s_j = ")[1].split(",")[0])
        rows = p.view().locator("details.panel table.steps tr[data-col]:not(.omitted)")
        for k in range(rows.count()):
            score, weight = (float(rows.nth(k).locator(f"td.{c}").inner_text()) for c in ("score", "weight"))
            assert abs(math.exp(score - m) / Z - weight) <= 1e-3  # this head's softmax, from the screen
    # the training slider follows the picker, and says which head it shows: head 2's rows of the last validation
    assert p.page.inner_text("#train-head").startswith("Showing head 2 of 2")
    frame = data["history"]["frames"][-1][0]
    cells = heat_cells(p, "#train-frame")
    S = len(data["history"]["sentences"][0]["sp"])
    want = [dense_row(row, S) for row in frame["heads"][1]]
    assert len(cells) == len(want) * S and all(abs(w - want[r][c]) <= 1e-3 for (r, c), w in cells.items())
    p.clean()


# -- the step panel's arithmetic, checked from the screen --------------------------------------


def panel_numbers(panel):
    """What a reader sees in the step panel: m, Z, and per stored row (column, score, weight)."""
    text = panel.inner_text()
    rows = panel.locator("table.steps tr[data-col]:not(.omitted)")
    cells = rows.evaluate_all(
        "ns => ns.map(n => [+n.dataset.col, n.querySelector('td.score').textContent,"
        " n.querySelector('td.weight').textContent])"
    )
    return text, [(j, float(s), float(w)) for j, s, w in cells]


def assert_no_contradicted_inequality(text):
    """Every "a ≤ b" the panel prints holds for the numbers it prints."""
    import re

    found = re.findall(r"‖c‖ = ([0-9.]+)\s+≤\s+Σ_i w_i·‖v_i‖ = ([0-9.]+)", text)
    assert len(found) == text.count("≤"), text  # no other inequality is printed
    assert all(float(a) <= float(b) for a, b in found), found


def test_a_fully_stored_sentence_lets_the_reader_redo_the_softmax(browser, page_path):
    data = read_page_data(page_path)
    p = Opened(browser, page_path, "#sentence=0")
    for pick in (0, 1, 2):
        if pick:
            p.page.click(f'#sentences tr.row[data-index="{pick}"]')
        out = data["sentences"][pick]["out"][0]
        S = len(out["sp"])
        for t in range(len(out["op"])):
            if t:
                p.page.click("#forward")
            text, rows = panel_numbers(p.view().locator("details.panel"))
            assert "Every score of this step is stored" in text and len(rows) == S  # one row per source position
            assert p.view().locator("details.panel tr.omitted").count() == 0
            top = max(s for _, s, _ in rows)
            total = sum(math.exp(s - top) for _, s, _ in rows)
            for _, s, w in rows:  # softmax of the shown scores = the shown weights, to the 3 digits shown
                assert abs(math.exp(s - top) / total - w) <= 0.0005 + 1e-9, (pick, t, s, w)
            assert_no_contradicted_inequality(text)
    p.clean()


def test_a_compressed_sentence_says_so_and_prints_no_inequality_it_cannot_show(browser, page_path):
    data = read_page_data(page_path)
    assert "first 10 sentences of each test split" in data["scores_note"]
    splits = [s["split"] for s in data["sentences"]]
    full = [i for i, s in enumerate(data["sentences"]) if i - splits.index(s["split"]) < 10]
    assert all(
        len(row) // 2 == len(data["sentences"][i]["out"][0]["sp"])
        for i in full
        for row in data["sentences"][i]["out"][0]["sa"]
    )
    compressed = next(  # a later sentence with a step whose small weights were left out
        (i, t)
        for i, s in enumerate(data["sentences"])
        if i not in full
        for t, row in enumerate(s["out"][0]["sa"])
        if len(row) // 2 < len(s["out"][0]["sp"])
    )
    i, t = compressed
    p = Opened(browser, page_path, f"#sentence={i}&step={t + 1}")
    text, rows = panel_numbers(p.view().locator("details.panel"))
    assert "Compressed: only the scores of weights of 2 % and more are stored" in text
    assert data["scores_note"] in text and "Scores not stored for the" in text
    assert len(rows) == len(data["sentences"][i]["out"][0]["sa"][t]) // 2
    assert_no_contradicted_inequality(text)
    assert "≤" not in text  # the sum over every position is not on screen: no inequality about it
    p.clean()


def test_the_length_chart_marks_each_lines_style_and_every_buckets_count(browser, page_path):
    data = read_page_data(page_path)
    summary = data["models"][0]["summary"]
    p = Opened(browser, page_path)
    key = p.page.locator("table.length-key tr.series")
    assert key.count() == len(summary) == 2
    styles = [key.nth(k).locator("td.swatch").get_attribute("data-style") for k in range(2)]
    assert styles == ["solid", "dashed"] and all(s in key.nth(k).inner_text() for k, s in enumerate(styles))
    dashes = p.page.locator("table.length-key td.swatch line").evaluate_all(
        "ns => ns.map(n => n.getAttribute('stroke-dasharray'))"
    )
    lines = p.page.locator(".length-chart svg polyline").evaluate_all(
        "ns => ns.map(n => n.getAttribute('stroke-dasharray'))"
    )
    assert dashes == lines and len(set(dashes)) == 2  # the legend draws each line as the chart does
    for k, split in enumerate(summary):
        counts = key.nth(k).locator("td.num").all_inner_texts()
        assert counts == [str(b["n"]) for b in summary[split]["buckets"]]  # every bucket's count, on screen
    few = sum(1 for r in summary.values() for b in r["buckets"] if b["bleu"] is not None and b["n"] < 20)
    assert few > 0 and p.page.locator(".length-chart svg circle.few").count() == few
    assert p.page.locator(".length-chart svg text.few-n").count() == few  # "n=2" beside a faded point
    assert "fewer than 20 sentences" in p.page.inner_text("table.length-key")
    p.clean()


def test_the_run_page_of_make_explore_holds_every_score_of_its_sentences(browser, run, tmp_path):
    from seq2seq.explorer import run_page

    path = run_page(run, tmp_path / "run.html")
    data = read_page_data(path)
    out = data["sentences"][0]["out"][0]
    assert all(len(row) // 2 == len(out["sp"]) for row in out["sa"])
    p = Opened(browser, path, "#sentence=0")
    text, rows = panel_numbers(p.view().locator("details.panel"))
    assert "Every score of this step is stored" in text and "holds no scores" not in text
    assert len(rows) == len(out["sp"])
    p.clean()


# -- a Transformer: every layer's cross- and self-attention, by module and head -----------------------


@pytest.fixture(scope="module")
def transformer(corpus_root, tmp_path_factory):
    """A tiny Transformer run, its translation page (every module of every sentence), a page whose later
    sentences keep only the reported module, and its make explore page (the slider over its history)."""
    from conftest import TINY_TRANSFORMER, compose
    from seq2seq.explorer import run_page, write_page
    from seq2seq.training import train
    from seq2seq.translator import Translator, explorer_records, translation_page

    run = tmp_path_factory.mktemp("transformer") / "transformer"
    train(compose([*TINY_TRANSFORMER, f"data.root={corpus_root}", "train.max_steps=30"]), run)
    explore = run_page(run, run / "explore.html")
    translator = Translator.from_checkpoint(run / "best.pt")
    sentences = [s["src"] for s in read_page_data(explore)["sentences"]]
    full = translator.write_page(run / "page.html", sentences)
    hyps = [h[0] for h in translator.nbest(sentences, return_attention=True)]
    records = explorer_records(translator, sentences, hyps, [None] * len(sentences), full=1)
    mixed = write_page(run / "mixed.html", translation_page(translator, sentences, records))
    return {"run": run, "full": full, "mixed": mixed, "explore": explore}


MODULES = {  # a 2+2-layer Transformer's modules, as the picker lists them
    "decoder.0.cross": "cross-attention layer 1 of 2",
    "decoder.1.cross": "cross-attention layer 2 of 2 (last: what decoding reports)",
    "encoder.0.self": "encoder self-attention layer 1 of 2",
    "encoder.1.self": "encoder self-attention layer 2 of 2",
    "decoder.0.self": "decoder self-attention layer 1 of 2",
    "decoder.1.self": "decoder self-attention layer 2 of 2",
}


def heat_labels(p, where):
    rows = p.page.locator(f"{where} table.heat th.out").all_inner_texts()
    return rows, p.page.locator(f"{where} table.heat th.src").all_inner_texts()


def test_the_module_picker_lists_every_module_and_shows_the_source_attending_to_itself(browser, transformer):
    data = read_page_data(transformer["full"])
    out = data["sentences"][0]["out"][0]
    p = Opened(browser, transformer["full"], "#sentence=0")
    assert p.page.is_visible("#module-pick") and p.page.inner_text("#module-pick").startswith("attention:")
    options = p.page.locator("#module option")
    assert options.evaluate_all("ns => ns.map(n => n.value)") == list(MODULES)
    assert options.all_inner_texts() == list(MODULES.values())
    assert p.page.input_value("#module") == "decoder.1.cross"  # what decoding reports, as an LSTM page shows
    view = '#views .view[data-model="0"]'
    assert heat_labels(p, view) == (out["op"], out["sp"])
    p.page.select_option("#module", "encoder.0.self")
    S = len(out["sp"])
    assert heat_labels(p, view) == (out["sp"], out["sp"])  # source x source
    assert "source attends to itself" in p.page.inner_text("#module-note")
    assert "encoder self-attention layer 1 of 2 · mean of 4 heads" in p.view().locator("h3").inner_text()
    cells = heat_cells(p, view)
    want = [dense_row(row, S) for row in out["modules"]["encoder.0.self"]["att"]]
    assert len(cells) == S * S and all(abs(w - want[r][c]) <= 1e-3 for (r, c), w in cells.items())
    assert p.view().locator("svg.flow text.src").count() == p.view().locator("svg.flow text.out").count() == S
    p.clean()


def test_a_chosen_layer_and_head_drive_the_panel_whose_softmax_is_the_weights(browser, transformer):
    data = read_page_data(transformer["full"])
    out = data["sentences"][0]["out"][0]
    S = len(out["sp"])
    p = Opened(browser, transformer["full"], "#sentence=0")
    view, panels = '#views .view[data-model="0"]', set()
    for name, h in (("encoder.1.self", 0), ("encoder.0.self", 3), ("decoder.0.cross", 2), ("decoder.1.cross", 1)):
        p.page.select_option("#module", name)
        p.page.select_option("#head", str(h))
        head = out["heads"][h] if name == "decoder.1.cross" else out["modules"][name]["head_scores"][h]
        cells, want = heat_cells(p, view), weights_of(head, S)
        assert all(abs(cells[(t, j)] - w) <= 1e-3 for t, row in enumerate(want) for j, w in row.items())
        for t in (0, 1, 2):
            p.page.evaluate(f"setStep({t})")
            text, rows = panel_numbers(p.view().locator("details.panel"))
            assert f"head {h + 1} of 4" in text and "Every score of this step is stored" in text and len(rows) == S
            assert MODULES[name].split(" (")[0] in p.view().locator("details.panel .query").inner_text()
            top = max(s for _, s, _ in rows)
            total = sum(math.exp(s - top) for _, s, _ in rows)
            assert all(abs(math.exp(s - top) / total - w) <= 0.0005 + 1e-9 for _, s, w in rows), (name, h, t)
            assert_no_contradicted_inequality(text)
            panels.add(text)
        if name.startswith("encoder"):
            assert "W_K x_j" in text and p.view().locator("details.panel summary").inner_text().startswith(
                "Inside source position 3"
            )
    assert len(panels) == 12  # every module, head and step shows its own numbers
    p.clean()


def test_decoder_self_attention_is_causal_and_shows_its_weights_only(browser, transformer):
    data = read_page_data(transformer["full"])
    out = data["sentences"][0]["out"][0]
    T = len(out["op"])
    p = Opened(browser, transformer["full"], "#sentence=0")
    view = '#views .view[data-model="0"]'
    for h in ("-1", "1"):
        p.page.select_option("#module", "decoder.1.self")
        p.page.select_option("#head", h)
        rows, cols = heat_labels(p, view)
        assert rows == out["op"] and cols == ["<s>", *out["op"][:-1]]  # the decoder reads what it wrote before
        cells = heat_cells(p, view)
        assert len(cells) == T * T and all(w == 0 for (t, j), w in cells.items() if j > t)  # the future: exactly 0
        assert all(abs(sum(w for (t, _), w in cells.items() if t == r) - 1) <= 0.06 for r in range(T))
        stored = out["modules"]["decoder.1.self"]
        want = stored["att"] if h == "-1" else stored["heads"][int(h)]
        assert all(abs(cells[(t, j)] - pm / 1000) <= 1e-3 for t, row in enumerate(want) for j, pm in row)
        for t in (0, 2):
            p.page.evaluate(f"setStep({t})")
            panel = p.view().locator("details.panel")
            text = panel.inner_text()
            assert "Weights only" in text and "−∞" in text and "no softmax to redo" in text
            assert panel.locator("td.score").count() == 0 and panel.locator("tr.future").count() == T - 1 - t
    assert "above the diagonal is 0" in p.page.inner_text("#module-note")
    p.clean()


def test_a_sentence_keeping_only_the_reported_module_says_so_and_which_keep_all(browser, transformer):
    data = read_page_data(transformer["mixed"])
    assert "modules" in data["sentences"][0]["out"][0] and "modules" not in data["sentences"][1]["out"][0]
    p = Opened(browser, transformer["mixed"], "#sentence=1")
    p.page.select_option("#module", "encoder.0.self")
    note = p.page.inner_text("#module-note")
    assert "only the last layer's cross-attention" in note and "Every module is kept for sentence 0." in note
    assert p.view().locator("table.heat").count() == 0 and "only the last layer" in p.view().inner_text()
    p.page.select_option("#module", "decoder.1.cross")  # the one it keeps
    assert p.view().locator("table.heat").count() == 1
    p.page.click('#sentences tr.row[data-index="0"]')
    p.page.select_option("#module", "encoder.0.self")
    assert p.view().locator("table.heat").count() == 1 and "only the last" not in p.page.inner_text("#module-note")
    p.clean()


def test_the_training_slider_follows_the_module_and_head_picker(browser, transformer):
    data = read_page_data(transformer["explore"])
    history = [json.loads(line) for line in (transformer["run"] / HISTORY_FILE).read_text().splitlines()]
    assert len(data["history"]["steps"]) == len(history) == 2
    p = Opened(browser, transformer["explore"], "#sentence=0")
    for name, h in (("encoder.1.self", 2), ("decoder.0.cross", 0), ("decoder.0.self", 3)):
        p.page.select_option("#module", name)
        p.page.select_option("#head", str(h))
        assert p.page.inner_text("#train-module").startswith("Showing " + MODULES[name].split(" (")[0])
        for k in (1, 0):
            p.page.locator("#train-step").fill(str(k))
            s = history[k]["sentences"][0]
            module = s["modules"][name]
            S = len(s["sp"]) if name.endswith("cross") or name.startswith("encoder") else len(s["op"])
            want = (
                [{j: pm / 1000 for j, pm in row} for row in module["heads"][h]]
                if "heads" in module
                else weights_of(module["head_scores"][h], S)
            )
            cells = heat_cells(p, "#train-frame")
            assert len(cells) == len(want) * S
            assert all(abs(w - want[r].get(c, 0.0)) <= 2e-3 for (r, c), w in cells.items()), (name, k)
    p.clean()
