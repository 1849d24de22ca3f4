"""The explorer in a real browser: headless Chromium renders the page from disk (``make test-browser``).

Needs Debian's ``chromium`` (``apt-get install chromium``); ``.ci/run`` installs it. The page is
loaded as a file, with the network off, and its DOM is dumped after the script has run.
"""

import re
import shutil
import subprocess

import pytest

from seq2seq.evaluate import evaluate_run
from seq2seq.explorer import read_page_data

pytestmark = pytest.mark.browser

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert found, "no Chromium on PATH: install it (Debian: apt-get install chromium) to run make test-browser"
    return found


def render(page, tmp_path, fragment=""):
    """The page's DOM after its script ran, and the browser's console log."""
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    url = page.resolve().as_uri() + fragment
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@pytest.fixture(scope="module")
def page(trained_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("browser") / "bahdanau"
    run.mkdir()
    shutil.copy(trained_run / "best.pt", run / "best.pt")
    evaluate_run(run, n_heatmaps=0, bootstrap=20)
    return run / "eval" / "greedy" / "explorer.html"


def test_the_page_renders_every_sentence_and_the_selected_heatmap(page, tmp_path):
    data = read_page_data(page)
    pick = 7
    dom, console = render(page, tmp_path, f"#sentence={pick}")
    assert 'data-ready="1"' in dom and "data-error" not in dom, console[-2000:]
    assert "Uncaught" not in console and "SyntaxError" not in console
    rows = re.findall(r'<tr class="row( selected)?" data-index="(\d+)"', dom)
    assert len(rows) == len(data["sentences"]) == 80
    assert [int(i) for sel, i in rows if sel] == [pick]
    out = data["sentences"][pick]["out"][0]
    heat = dom[dom.index('<table class="heat">') : dom.index("</table>", dom.index('<table class="heat">'))]
    cells = re.findall(r'<td data-row="(\d+)" data-col="(\d+)"', heat)
    assert len(cells) == len(out["op"]) * len(out["sp"])  # one cell per output piece and source piece
    assert heat.count('class="src"') == len(out["sp"]) and heat.count('class="out"') == len(out["op"])
    assert f"{data['sentences'][pick]['out'][0]['hyp']}" in dom.replace("&amp;", "&").replace("&quot;", '"')
