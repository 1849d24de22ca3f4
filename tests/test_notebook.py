"""The lesson as a notebook (examples/attention_lesson.py, percent format), run end to end on a small budget
in a real Jupyter kernel: jupytext makes the notebook, nbclient runs it with the python3 kernel."""

import importlib.util

import jupytext
import nbclient
import pytest

from conftest import CORPORA, REPO
from seq2seq.explorer import read_page_data

NOTEBOOK = REPO / "examples" / "attention_lesson.py"
WIDGET = "application/vnd.jupyter.widget-view+json"


def test_the_notebook_is_percent_format_with_markdown_and_code_cells():
    text = NOTEBOOK.read_text()
    cells = text.split("# %%")
    assert len(cells) > 10 and text.startswith("# %% [markdown]")
    assert sum(c.startswith(" [markdown]") for c in cells) >= 5


def _cell(notebook, source: str):
    """The one code cell whose source holds ``source``."""
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and source in c.source]
    return cell


def _text(cell) -> str:
    """What a cell printed, stdout and stderr together, and its results' plain text."""
    parts = [o.text for o in cell.outputs if o.output_type == "stream"]
    parts += [o.data.get("text/plain", "") for o in cell.outputs if "data" in o]
    return "".join(parts)


def _number(text: str, before: str) -> float:
    """The number printed right after ``before``."""
    return float(text.split(before, 1)[1].split()[0])


@pytest.mark.slow
def test_the_notebook_in_a_jupyter_kernel_shows_its_heatmap_progress_and_explorer_page(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_LESSON_QUICK", "1")
    monkeypatch.setenv("SEQ2SEQ_LESSON_OUT", str(tmp_path))
    monkeypatch.setenv("SEQ2SEQ_DATA_DIR", str(CORPORA))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own (inline) backend, as a learner has it
    notebook = jupytext.read(NOTEBOOK)
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    everything = "".join(_text(c) for c in notebook.cells if c.cell_type == "code")
    assert "TqdmWarning" not in everything and "Traceback" not in everything, everything[-3000:]

    first = _cell(notebook, "torch.manual_seed(0)")
    assert first.outputs == []  # no <torch._C.Generator ...> under the imports
    assert "each row sums to [1.0, 1.0]" in _text(_cell(notebook, "lesson_attention(query, keys, values)"))
    lesson = _text(_cell(notebook, "for score in FORMULAS"))
    assert "the trainer's dot attention gives the lesson's weights" in lesson
    for score in ("dot:", "scaled_dot:", "general:", "concat:"):
        assert f"\n{score}\n" in f"\n{lesson}"

    # a sequence attends to itself, with the Transformer's MultiHeadAttention on the lesson's tensors
    sums = "row sums [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"
    one_head = _cell(notebook, "one_head = MultiHeadAttention(")
    assert any("image/png" in o.get("data", {}) for o in one_head.outputs), one_head.outputs
    assert "weights (2, 1, 6, 6) (batch, heads, queries, keys)" in _text(one_head)
    assert f"example 0, {sums}" in _text(one_head)
    by_hand = _text(_cell(notebook, "def by_hand("))
    assert _number(by_hand, "one head, by hand: max |module - by hand| =") < 1e-6
    heads = _cell(notebook, "four_heads = MultiHeadAttention(")
    assert any("image/png" in o.get("data", {}) for o in heads.outputs), heads.outputs
    assert _text(heads).count(sums) == 4 and _number(_text(heads), "4 heads, by hand: max |module - by hand| =") < 1e-6
    causal = _text(_cell(notebook, "causal = positions"))
    mask = "\n ".join(f"[{' '.join(['1'] * (i + 1) + ['0'] * (5 - i))}]" for i in range(6))
    assert f"[{mask}]" in causal  # zeros above the diagonal: no position sees a later one
    assert "above the diagonal: max weight 0.0 in every example and head" in causal
    assert _number(causal, "the outputs at x0..x2 change by") == 0.0
    positions = _text(_cell(notebook, "order = [3, 0, 5, 1, 4, 2]"))
    assert _number(positions, "permutation-equivariant: max |attend(shuffled x) - shuffled attend(x)| =") < 1e-6
    assert _number(positions, "sinusoidal positions added: the same difference is") > 1e-2
    assert _number(positions, "rotary: max |(3, 1) - (103, 101)| =") < 1e-5
    near, far = (positions.split(f"rotary, {pair}:")[1].split("\n")[0] for pair in ("(3, 1)", "(103, 101)"))
    assert near.split() == far.split() != positions.split("rotary, (3, 2):")[1].split()[:4]

    cell = _cell(notebook, "result = train(compose(overrides), run)")
    training = _text(cell)
    progress = [line for line in training.splitlines() if " | epoch 1 | loss " in line]
    if importlib.util.find_spec("ipywidgets") is None:  # the dev extra's set-up: a line every log_every
        assert [line.split()[2] for line in progress] == [f"{n}/300" for n in range(50, 301, 50)]
    else:  # tqdm's notebook bar, and no lines that repeat it
        assert any(WIDGET in o.get("data", {}) for o in cell.outputs) and progress == []
    assert "step 300 | valid loss" in training and "trained 300 updates" in training
    log = (tmp_path / "quick" / "train.log").read_text()
    assert sum(" | epoch 1 | loss " in line for line in log.splitlines()) == 6  # the same lines, in train.log

    heatmap = _cell(notebook, "attention_figure(hyp.attention")
    assert any("image/png" in o.get("data", {}) for o in heatmap.outputs), heatmap.outputs
    assert "The cat sat on the mat. -> " in _text(heatmap) and "looks most at" in _text(heatmap)

    transformer = _text(_cell(notebook, "result = train(compose(overrides), transformer_run)"))
    assert "trained 200 updates" in transformer and "The cat sat on the mat. -> " in transformer
    log = (tmp_path / "quick_transformer" / "train.log").read_text()
    assert "model: transformer (2+2 layers, d 64, 4 heads, sinusoidal positions, pre-norm)" in log

    data = read_page_data(tmp_path / "lesson.html")
    assert [s["src"] for s in data["sentences"]][0] == "The cat sat on the mat."
    first_step = data["sentences"][0]["out"][0]
    assert first_step["sa"] and first_step["z"] and data["models"][0]["attention"]["type"] == "bahdanau"
