"""seq2seq.plots: figures that choose no matplotlib backend for their caller and show in a notebook."""

import os
import subprocess
import sys

from conftest import REPO

DRAW = """
import sys
import numpy as np
import matplotlib
from seq2seq.plots import attention_figure, close
fig = attention_figure(np.full((2, 3), 1 / 3), ["a", "b", "</s>"], ["x", "</s>"], title="t")
png = fig._repr_png_()  # what a Jupyter kernel shows for a cell that ends with the figure
fig.savefig(sys.argv[1])
close(fig)
print(png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", "matplotlib.pyplot" in sys.modules, matplotlib.rcParams["backend"])
"""


def test_figures_choose_no_backend_and_show_as_png(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # a notebook's: the library must keep it
    out = tmp_path / "heatmap.png"
    done = subprocess.run(
        [sys.executable, "-c", DRAW, str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "module://matplotlib_inline.backend_inline"]
    assert out.read_bytes()[:4] == b"\x89PNG"
