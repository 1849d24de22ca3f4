"""The attention explorer: the page's embedded data against the report, the model and the commands."""

import io
import json
import math
import shutil
import sys

import pytest
import torch

from conftest import TINY, TINY_TRANSFORMER, compose, events
from seq2seq.attention_rows import scored_rows
from seq2seq.evaluate import evaluate_run
from seq2seq.evaluate import main as evaluate_main
from seq2seq.explorer import FULL_SCORES, read_page_data, row_statistics, sparse_rows, weights_of
from seq2seq.metrics import attention_statistics
from seq2seq.translate import main as translate_main
from seq2seq.translator import Translator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rows_keep_most_of_the_mass_and_sum_to_about_one_even_when_flat():
    sharp = torch.softmax(torch.randn(6, 9) * 3, dim=-1)
    flat = torch.softmax(torch.randn(3, 600) * 0.1, dim=-1)  # an untrained model on a long input
    for weights in (sharp, flat):
        rows = sparse_rows(weights)
        assert len(rows) == len(weights)
        for row, dense in zip(rows, weights.tolist()):
            assert all(0 <= j < len(dense) and 1 <= p <= 1000 for j, p in row)
            assert {j for j, w in enumerate(dense) if w >= 0.05} <= {j for j, _ in row}  # every large weight
            assert 945 <= sum(p for _, p in row) <= 1001
            assert [j for j, _ in row] == sorted(j for j, _ in row)


def test_full_rows_keep_every_score_and_their_softmax_is_the_weights_as_shown():
    torch.manual_seed(0)
    scores = torch.randn(5, 12) * 4  # peaked rows: most weights far under 2 %
    weights = scores.softmax(-1)
    sa, m, z = scored_rows(scores, weights, full=True)
    out = {"sa": sa, "m": m, "z": z, "sp": ["x"] * 12}
    for t, row in enumerate(sa):
        assert [row[k] for k in range(0, len(row), 2)] == list(range(12))  # every position, in order
        shown = torch.tensor([m[t] - d / 1000 for d in row[1::2]], dtype=torch.float64)  # the scores on screen
        assert z[t] == pytest.approx(float((shown - m[t]).exp().sum()), abs=5e-5)  # Z of the shown scores
        by_hand = shown.softmax(-1).tolist()
        assert all(abs(weights_of(out)[t][j] - by_hand[j]) <= 1e-12 for j in range(12))
        assert all(abs(by_hand[j] - float(weights[t, j])) <= 1e-3 for j in range(12))  # ... and the model's
    compressed, _, _ = scored_rows(scores, weights)
    assert any(len(row) // 2 < 12 for row in compressed)  # the same rows compressed: small weights left out
    for row, w in zip(compressed, weights):
        kept = set(row[::2])
        assert {j for j in range(12) if w[j] >= 0.02} <= kept and int(w.argmax()) in kept


def test_statistics_of_sharp_diagonal_and_uniform_attention():
    eye = torch.eye(5)
    assert row_statistics(eye) == (0.0, 0.0)
    uniform = torch.full((4, 8), 1 / 8)
    entropy, _ = row_statistics(uniform)
    assert entropy == pytest.approx(math.log(8))
    batch = torch.stack([torch.eye(5), torch.zeros(5, 5)])  # the second sentence: 2 rows over 3 columns
    batch[1, :2, :3] = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # anti-diagonal
    e, d, n = attention_statistics(batch, torch.tensor([5, 3]), torch.tensor([5, 2]))
    assert n == 7 and e == pytest.approx(0.0, abs=1e-6) and d == pytest.approx(2.0)  # two rows 1.0 off


@pytest.fixture(scope="module")
def explored(trained_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("explore") / "bahdanau"
    run.mkdir()
    shutil.copy(trained_run / "best.pt", run / "best.pt")
    report = evaluate_run(run, n_heatmaps=0, bootstrap=20, concat=2, precision="fp32")
    return run, report, read_page_data(run / "eval" / "greedy" / "explorer.html")


def test_eval_writes_an_explorer_with_every_sentence_and_its_attention(explored):
    run, report, data = explored
    natural = ["test_2016_flickr", "test_2017_flickr"]
    splits = [s["split"] for s in data["sentences"]]
    assert [splits.count(s) for s in [*natural, "test_2016_flickr+k2"]] == [40, 40, 20]
    assert "test_2017_flickr+k2" not in splits  # long inputs of the first split only: a small page
    for split in natural:
        hyps = (run / "eval" / "greedy" / f"{split}.hyp.txt").read_text().splitlines()
        assert [s["out"][0]["hyp"] for s in data["sentences"] if s["split"] == split] == hyps
        summary = data["models"][0]["summary"][split]
        assert (
            summary["bleu"] == report["splits"][split]["bleu"]
            and summary["buckets"] == report["splits"][split]["buckets"]
        )
    translator = Translator.from_checkpoint(run / "best.pt", precision="fp32")  # as the page was decoded
    sentence = data["sentences"][3]
    hyp = translator.nbest([sentence["src"]], return_attention=True)[0][0]
    src_pieces, out_pieces = translator.labels(sentence["src"], hyp)
    out = sentence["out"][0]
    assert out["sp"] == src_pieces and out["op"] == out_pieces  # the model's own pieces, </s> included
    want = translator.nbest([sentence["src"]], return_attention=True)[0][0].attention  # (T, S)
    got = weights_of(out)
    for t, row in enumerate(want.tolist()):  # the page's weights are the model's, where 2 % and more
        assert {j for j, w in enumerate(row) if w >= 0.02} <= set(got[t])
        assert all(abs(got[t][j] - row[j]) <= 1e-3 for j in got[t])
    for s in data["sentences"]:
        o = s["out"][0]
        rows = weights_of(o)
        assert "att" not in o and len(rows) == len(o["op"]) == len(o["z"]) == len(o["m"]) == len(o["cn"])
        assert all(sum(row.values()) <= 1.001 and max(row.values()) > 0 for row in rows)
        assert all(j < len(o["sp"]) for row in rows for j in row) and len(o["vn"]) == len(o["sp"])
        assert 0 <= o["chrf"] <= 100 and o["ent"] >= 0 and 0 <= o["diag"] <= 1 and s["words"] == len(s["src"].split())
    opened = [s for k, s in enumerate(data["sentences"]) if k - splits.index(s["split"]) < FULL_SCORES]
    opened = [s for s in opened if s["split"] in natural]  # long inputs stay compressed: a small page
    assert len(opened) == 2 * FULL_SCORES
    for s in opened:  # every score of each test split's first sentences
        assert all(len(row) // 2 == len(s["out"][0]["sp"]) for row in s["out"][0]["sa"])
    assert f"first {FULL_SCORES} sentences" in data["scores_note"]
    # compact whatever the model attends to: page code, text, about eight bytes per stored score and fifteen
    # per row (a 60-step model may emit max-length outputs with flat attention: many scores over 2 %)
    outs = [s["out"][0] for s in data["sentences"]]
    scores = sum(len(row) // 2 for o in outs for row in o["sa"])
    rows = sum(len(o["sa"]) for o in outs)
    text = sum(len(s["src"]) + len(s["ref"]) + len(s["out"][0]["hyp"]) for s in data["sentences"])
    pieces = sum(len(p) + 3 for o in outs for p in o["sp"] + o["op"])
    size = (run / "eval" / "greedy" / "explorer.html").stat().st_size
    assert size < 120_000 + 9 * scores + 15 * rows + 2 * text + pieces


@pytest.fixture(scope="module")
def none_run(corpus_root, tmp_path_factory):
    from seq2seq.training import train

    run = tmp_path_factory.mktemp("none") / "none"
    train(compose([*TINY, "attention=none", f"data.root={corpus_root}", "train.max_steps=10"]), run)
    return run


def test_compare_puts_runs_side_by_side_and_none_has_no_heatmaps(explored, none_run, tmp_path, capsys):
    run, _, _ = explored
    page = tmp_path / "compare.html"
    status = evaluate_main(
        ["--compare", str(none_run), str(run), "--concat", "2", "--bootstrap", "20", "--out", str(page)]
    )
    assert status == 0 and f"wrote {page}" in capsys.readouterr().out
    data = read_page_data(page)
    assert [m["name"] for m in data["models"]] == ["none", "bahdanau (concat)"]
    assert len(data["sentences"]) == 100 and all(len(s["out"]) == 2 for s in data["sentences"])
    assert all(weights_of(s["out"][0]) is None and weights_of(s["out"][1]) for s in data["sentences"] if s["src"])


def test_compare_of_runs_on_other_sentences_is_one_line(explored, none_run, tmp_path, capsys):
    run, _, _ = explored
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(run / "best.pt", other / "best.pt")
    evaluate_run(other, n_heatmaps=0, bootstrap=20)  # no --concat: fewer sentences
    status = evaluate_main(["--compare", str(run), str(other), "--out", str(tmp_path / "c.html")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "other sentences" in err and err.count("\n") == 1


def test_translate_html_shows_what_was_typed(trained_run, tmp_path, monkeypatch, capsys):
    page = tmp_path / "page.html"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("Ein Hund rennt.\n\nZwei Männer.\n".encode())))
    status = translate_main(["--checkpoint", str(trained_run / "best.pt"), "--html", str(page)])
    out, err = capsys.readouterr()
    assert status == 0 and f"wrote {page}" in err
    data = read_page_data(page)
    assert [s["src"] for s in data["sentences"]] == ["Ein Hund rennt.", "", "Zwei Männer."]
    assert [s["out"][0]["hyp"] for s in data["sentences"]] == out.splitlines()
    assert "ref" not in data["sentences"][0] and len(weights_of(data["sentences"][0]["out"][0])) > 0
    for s in data["sentences"]:  # one's own input: every score of every step, to check the panel by hand
        assert all(len(row) // 2 == len(s["out"][0]["sp"]) for row in s["out"][0].get("sa", []))
    assert data["sentences"][2]["out"][0]["sa"]


def test_validation_logs_attention_statistics(trained_run):
    scalars = set(events(trained_run).Tags()["scalars"])
    assert {"valid/attention_entropy", "valid/attention_diagonal"} <= scalars
    entropy = [e.value for e in events(trained_run).Scalars("valid/attention_entropy")]
    assert all(0 < v < 5 for v in entropy)


# -- a Transformer's modules: every layer's cross- and self-attention on the page -------------------


def _steps(T, S, heads=4, causal=False, seed=0):
    """A module's Steps as seq2seq.lesson_layers gives them: per head raw scores and their softmax, the mean."""
    from seq2seq.lesson import Steps

    g = torch.Generator().manual_seed(seed)
    per_head = []
    for _ in range(heads):
        scores = torch.randn(T, S, generator=g) * 2
        if causal:
            scores = scores.masked_fill(torch.ones(T, S).triu(1).bool(), float("-inf"))
        per_head.append(Steps(scores, scores.softmax(-1), torch.rand(T), torch.rand(T), torch.rand(S)))
    mean = torch.stack([h.weights for h in per_head]).mean(0)
    return Steps(mean.clamp(min=1e-30).log(), mean, torch.rand(T), torch.rand(T), torch.rand(S), heads=per_head)


def _layered(T, S, seed=0):
    """One sentence of a 2+2-layer Transformer: every module but the reported one (decoder.1.cross)."""
    from seq2seq.attention_rows import module_fields

    modules = {
        "encoder.0.self": _steps(S, S, seed=seed),
        "encoder.1.self": _steps(S, S, seed=seed + 1),
        "decoder.0.self": _steps(T, T, causal=True, seed=seed + 2),
        "decoder.0.cross": _steps(T, S, seed=seed + 3),
        "decoder.1.self": _steps(T, T, causal=True, seed=seed + 4),
        "decoder.1.cross": _steps(T, S, seed=seed + 5),
    }
    return modules, module_fields(modules, reported="decoder.1.cross")


def test_module_weights_are_each_heads_softmax_and_the_causal_heads_as_kept():
    from seq2seq.attention_rows import module_weights

    steps, fields = _layered(T=5, S=7)
    weights = module_weights(fields, positions=7)
    assert set(weights) == set(fields) == set(steps) - {"decoder.1.cross"}
    for name, module in weights.items():
        assert module["att"] == fields[name]["att"] and "head_scores" not in module
        for head, rows in zip(steps[name].heads, module["heads"]):
            cols = head.weights.size(1)
            for t, row in enumerate(rows):
                got = dense_row_weights(row, cols)
                assert all(abs(got[j] - float(head.weights[t, j])) <= 2e-3 for j in range(cols)), (name, t)
    assert weights["decoder.0.self"]["heads"] == fields["decoder.0.self"]["heads"]  # weights already
    assert all(j <= t for rows in weights["decoder.1.self"]["heads"] for t, row in enumerate(rows) for j, _ in row)


def dense_row_weights(row, S):
    out = [0.0] * S
    for j, p in row:
        out[j] = p / 1000
    return out


def test_the_run_page_of_a_transformer_keeps_every_module_for_the_panel_and_the_slider(tmp_path):
    from seq2seq.attention_rows import sparse_rows
    from seq2seq.explorer import run_page
    from seq2seq.history import append, panel_fields

    (tmp_path / "config.json").write_text(json.dumps(compose(TINY_TRANSFORMER).to_dict()))
    sp, op = ["▁a", "▁b", "c", "▁d", "▁e", "f", "</s>"], ["▁x", "▁y", "▁z", "w", "</s>"]
    entries = {}
    for step, seed in ((20, 0), (40, 10)):
        steps, fields = _layered(T=len(op), S=len(sp), seed=seed)
        reported = steps["decoder.1.cross"]
        sentence = {"src": "a b c", "sp": sp, "hyp": "x y z", "op": op, "att": sparse_rows(reported.weights)}
        sentence["heads"] = [sparse_rows(h.weights) for h in reported.heads]
        entries[step] = (steps, {**sentence, "modules": fields, **panel_fields(reported)})
        append(tmp_path, step, [entries[step][1], {**sentence, "src": "no modules", **panel_fields(reported)}])
    data = read_page_data(run_page(tmp_path, tmp_path / "page.html"))
    model = data["models"][0]
    assert model["name"] == "transformer (2+2 layers, d 32, 4 heads, sinusoidal positions, pre-norm)"
    a = model["attention"]
    assert a["type"] == "transformer" and a["layers"] == {"encoder": 2, "decoder": 2} and "no_scores" not in a
    assert "W_K x_j" in a["self_formula"] and set(a["self_query"]) == {"encoder", "decoder"}
    first, second = (s["out"][0] for s in data["sentences"])
    assert first["modules"] == entries[40][1]["modules"] and "modules" not in second  # the last validation's
    assert len(first["heads"]) == 4 and "sa" in first["heads"][0]  # the reported module's scores, as before
    frames = data["history"]["frames"]
    for k, step in enumerate((20, 40)):
        assert "modules" not in frames[k][1]
        got = frames[k][0]["modules"]["encoder.1.self"]["heads"][2]  # head 3's weights, from its scores
        want = entries[step][0]["encoder.1.self"].heads[2].weights
        assert all(abs(p / 1000 - float(want[t, j])) <= 2e-3 for t, row in enumerate(got) for j, p in row)


def test_transformer_info_puts_the_position_bias_on_self_attention_only():
    from seq2seq.explorer import transformer_info

    for positions, marker in (("sinusoidal", None), ("relative", "b_n(j − t)"), ("rope", "rotated")):
        info = transformer_info(compose([*TINY_TRANSFORMER_MODEL, f"model.positions={positions}"]).model)
        assert info["d"] == 8 and info["heads"] == 4 and info["positions"] == positions
        assert "b_n" not in info["head_formula"] and "rotated" not in info["head_formula"]  # cross: no positions
        assert marker is None or marker in info["self_formula"]


TINY_TRANSFORMER_MODEL = ["model=transformer", "model.d_model=32", "model.heads=4", "model.ff_size=64"]
