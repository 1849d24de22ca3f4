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
    for name in ("self", "heads", "causal"):  # self-attention's heatmaps, beside the first
        picture = out.with_name(f"demo_{name}.png")
        assert picture.stat().st_size > 10_000 and picture.read_bytes()[:4] == b"\x89PNG"


def _number(text: str, before: str) -> float:
    """The number printed right after ``before`` (its first occurrence)."""
    return float(text.split(before, 1)[1].split()[0].rstrip(","))


def test_the_demo_lets_the_sequence_attend_to_itself(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/attention_demo.py", "--out", str(tmp_path / "demo.png")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("self-attention: a sequence attends to itself.")[1]
    # one head: S x S weights, every row of both examples sums to 1; example 1's padding gets nothing
    assert "weights (2, 1, 6, 6) (B, heads, S queries, S keys)" in section
    one_head = section.split("multi-head")[0]
    rows = [line.split() for line in one_head.splitlines() if line.startswith("    q")]
    assert len(rows) == 6 and all(len(r) == 9 and r[-2] == "sum" for r in rows)
    # six weights printed to 3 places: their sum within 6 x 0.0005 of the exact 1.0000
    assert all(abs(sum(float(w) for w in r[1:7]) - 1) < 4e-3 and float(r[-1]) == 1.0 for r in rows)
    sums = "row sums [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"
    assert f"example 0, {sums}" in one_head and f"example 1, {sums}" in one_head
    assert "example 1's padding x5 gets 0.0 in every row" in one_head
    # the module against the lesson's arithmetic written out by hand, one head and four
    assert _number(one_head, "softmax(Q Kᵀ / √16) V then W_O: max |module - by hand| =") < 1e-6
    multi = section.split("multi-head")[1].split("causal self-attention")[0]
    assert multi.count("row sums 1.0000..1.0000") == 4 and "mean of the heads" in multi
    assert _number(multi, "then W_O: max |module - by hand| =") < 1e-6
    # causal: the mask's zeros above the diagonal, the weights' exact zeros there, the future changes nothing
    causal = section.split("causal self-attention")[1].split("positions:")[0]
    mask = [line.split() for line in causal.splitlines() if set(line.split()) <= {"0", "1"} and line.strip()]
    assert mask == [["1"] * (i + 1) + ["0"] * (5 - i) for i in range(6)]
    weights = [line.split()[1:7] for line in causal.splitlines() if line.startswith("    q")]
    assert all(float(weights[i][j]) == 0.0 for i in range(6) for j in range(i + 1, 6))
    assert all(float(weights[i][j]) > 0.0 for i in range(6) for j in range(i + 1))
    assert "above the diagonal: max weight 0.0 in every example and head" in causal
    assert _number(causal, "outputs at x0..x2 change by") == 0.0
    # positions: permutation-equivariant without them, not with sinusoidal ones; rotary depends on the offset
    positions = section.split("positions:")[1]
    assert _number(positions, "max |attend(x shuffled) - attend(x) shuffled| =") < 1e-6
    assert _number(positions, "with sinusoidal positions added (x + PE): the same check gives") > 1e-2
    near = positions.split("x2 at 3, x4 at 1:")[1].split()[:4]
    far = positions.split("x2 at 103, x4 at 101:")[1].split()[:4]
    other = positions.split("x2 at 3, x4 at 2:")[1].split()[:4]
    assert near == far and near != other
    assert _number(positions, "max difference") < 1e-5
