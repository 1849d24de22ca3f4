"""The lesson as a notebook (examples/attention_lesson.py, percent format), run end to end on a small budget."""

import os
import subprocess
import sys

import pytest

from conftest import CORPORA, REPO
from seq2seq.explorer import read_page_data

NOTEBOOK = REPO / "examples" / "attention_lesson.py"


def test_the_notebook_is_percent_format_with_markdown_and_code_cells():
    text = NOTEBOOK.read_text()
    cells = text.split("# %%")
    assert len(cells) > 10 and text.startswith("# %% [markdown]")
    assert sum(c.startswith(" [markdown]") for c in cells) >= 5


@pytest.mark.slow
def test_the_notebook_runs_from_the_lesson_to_the_explorer_page(tmp_path):
    env = {
        **os.environ,
        "SEQ2SEQ_LESSON_QUICK": "1",
        "SEQ2SEQ_LESSON_OUT": str(tmp_path),
        "SEQ2SEQ_DATA_DIR": str(CORPORA),
    }
    done = subprocess.run(
        [sys.executable, str(NOTEBOOK)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "the trainer's dot attention gives the lesson's weights" in out
    for score in ("dot:", "scaled_dot:", "general:", "concat:"):
        assert f"\n{score}\n" in f"\n{out}"
    assert "trained 300 updates" in out and "The cat sat on the mat. -> " in out and "looks most at" in out
    data = read_page_data(tmp_path / "lesson.html")
    assert [s["src"] for s in data["sentences"]][0] == "The cat sat on the mat."
    first = data["sentences"][0]["out"][0]
    assert first["sa"] and first["z"] and data["models"][0]["attention"]["type"] == "bahdanau"
