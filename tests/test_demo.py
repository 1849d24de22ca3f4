import subprocess
import sys

from conftest import REPO


def test_attention_demo_prints_every_score_and_saves_the_heatmap(tmp_path):
    out = tmp_path / "demo.png"
    result = subprocess.run(
        [sys.executable, "scripts/attention_demo.py", "--out", str(out)],
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
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
