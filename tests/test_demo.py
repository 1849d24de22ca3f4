import subprocess
import sys

from conftest import REPO


def test_attention_demo_prints_every_score_and_saves_the_heatmap(tmp_path):
    out = tmp_path / "demo.png"
    result = subprocess.run(  # make demo OUT=...: the heatmap where asked, not in the repo's outputs/
        ["make", "--no-print-directory", "demo", f"PYTHON={sys.executable}", f"OUT={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for score in ("dot", "scaled_dot", "general", "concat"):
        assert f"\n{score} " in result.stdout
    assert result.stdout.count("sums [1.0, 1.0]") == 4
    assert "query (2, 16)  keys (2, 6, 16)" in result.stdout
    # the explorer's step panel on the lesson's tensors, one per score function, its softmax written out
    assert result.stdout.count("as the explorer's step panel shows it") == 4
    for formula in ("qᵀk\n", "qᵀk / √d", "qᵀ W k", "vᵀ tanh(W_q q + W_k k)"):
        assert formula in result.stdout
    panel = result.stdout.split("as the explorer's step panel shows it:")[1]
    z = float(panel.split("Z = Σ exp(s_j - m) = ")[1].split()[0])
    rows = [line.split() for line in panel.splitlines()[5:11]]
    assert [r[1] for r in rows] == [f"k{i}" for i in range(6)]
    assert all(abs(float(r[3]) / z - float(r[4])) < 2e-4 for r in rows)  # w_i = exp(s_i - m) / Z
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    assert result.stdout.splitlines()[-1].startswith(f"wrote the heatmap to {out} ")  # where it went, said
