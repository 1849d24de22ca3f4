"""Long inputs from real sentences: k consecutive test sentences, and long training examples."""

import json
import logging
import subprocess
import sys

import pytest

from conftest import REPO, TINY, compose, write_corpus
from seq2seq.data.longinputs import join_consecutive, long_examples
from seq2seq.data.prepare import prepare_data
from seq2seq.errors import ConfigError, DataError
from seq2seq.evaluate import LONG_BUCKETS, evaluate_run, with_concatenations
from seq2seq.evaluate import main as evaluate_main

# -- k consecutive test sentences ------------------------------------------------------------


def test_k_consecutive_sentences_are_joined_on_both_sides_and_the_incomplete_group_dropped():
    src = [f"s{i} a" for i in range(10)]
    refs = [f"r{i} b" for i in range(10)]
    assert join_consecutive(src, refs, 1) == (src, refs)  # k = 1 is the split itself
    joined_src, joined_refs = join_consecutive(src, refs, 3)
    assert joined_src == ["s0 a s1 a s2 a", "s3 a s4 a s5 a", "s6 a s7 a s8 a"]  # s9 alone: dropped
    assert joined_refs == ["r0 b r1 b r2 b", "r3 b r4 b r5 b", "r6 b r7 b r8 b"]
    assert join_consecutive(src, refs, 3) == (joined_src, joined_refs)  # from the sentences alone
    assert len(join_consecutive(src, refs, 10)[0]) == 1


@pytest.mark.parametrize("k", [0, 11, 17])
def test_k_out_of_range_is_an_error(k):
    with pytest.raises(ConfigError, match=f"k={k} is out of range"):
        join_consecutive(["a"] * 10, ["b"] * 10, k)


def test_concatenated_splits_are_named_by_k():
    splits = {"test": ([f"s{i}" for i in range(7)], [f"r{i}" for i in range(7)])}
    out = with_concatenations(splits, 3)
    assert list(out) == ["test", "test+k2", "test+k3"]
    assert out["test+k2"][0] == ["s0 s1", "s2 s3", "s4 s5"] and out["test+k3"][1] == ["r0 r1 r2", "r3 r4 r5"]
    assert with_concatenations(splits, 1) == splits


# -- long training examples ------------------------------------------------------------------


def pairs(n=200):
    """Sources of 3 words; targets of 2, 3 or 4 words."""
    return [f"s{i} x y" for i in range(n)], [f"t{i}" + " w" * (i % 3 + 1) for i in range(n)]


def test_long_examples_keep_pairs_aligned_and_are_reproducible_from_the_seed():
    src, tgt = pairs()
    out_src, out_tgt, report = long_examples(src, tgt, 0.5, 4, seed=7, max_len=100)
    assert len(out_src) == len(out_tgt) == 200
    joined = 0
    for i, (s, t) in enumerate(zip(out_src, out_tgt)):
        rows_src = [int(w[1:]) for w in s.split() if w.startswith("s")]
        rows_tgt = [int(w[1:]) for w in t.split() if w.startswith("t")]
        assert rows_src == rows_tgt and rows_src[0] == i  # the same pairs, in the same order, this pair first
        assert 1 <= len(rows_src) <= 4 and len(set(rows_src)) == len(rows_src)
        joined += len(rows_src) > 1
    assert joined == report.built and 70 < joined < 130  # about half
    assert long_examples(src, tgt, 0.5, 4, seed=7, max_len=100)[:2] == (out_src, out_tgt)
    assert long_examples(src, tgt, 0.5, 4, seed=8, max_len=100)[:2] != (out_src, out_tgt)
    assert long_examples(src, tgt, 0.0, 4, seed=7, max_len=100)[:2] == (src, tgt)  # off


def test_long_examples_respect_the_length_filter_and_say_how_many_they_drop():
    src, tgt = pairs()
    out_src, out_tgt, report = long_examples(src, tgt, 1.0, 4, seed=1, max_len=13)  # joins of 4: 8-16 words
    assert max(len(t.split()) for t in out_tgt) <= 13 and max(len(s.split()) for s in out_src) <= 13
    assert report.too_long > 0 and report.built + report.too_long == 200
    assert f"({report.too_long} joins over data.filter.max_len kept as single pairs)" in str(report)
    with pytest.raises(DataError, match=r"max_k=6 builds examples the length filter drops: \d+ of \d+ joins of 6"):
        long_examples(src, tgt, 1.0, 6, seed=1, max_len=13)
    with pytest.raises(ConfigError, match="max_k=1 is out of range"):
        long_examples(src, tgt, 0.5, 1, seed=1, max_len=16)


def test_prepare_data_joins_training_pairs_only_and_reproducibly(corpus_root, caplog):
    base = [*TINY, f"data.root={corpus_root}", "data.filter.max_len=120"]
    plain_vocab, plain_train, plain_valid = prepare_data(compose(base))
    config = compose([*base, "data.long_examples.fraction=0.3", "data.long_examples.max_k=5"])
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        vocab, train, valid = prepare_data(config)
    assert vocab == plain_vocab  # SentencePiece learns from the natural sentences
    assert [list(x) for x in valid.src_ids] == [list(x) for x in plain_valid.src_ids]  # validation untouched
    assert valid.tgt_texts == plain_valid.tgt_texts
    assert len(train.src_ids) == len(plain_train.src_ids) == 1500
    longer = sum(len(a) > len(b) for a, b in zip(train.src_ids, plain_train.src_ids))
    assert 350 < longer < 550
    assert max(map(len, train.src_ids)) > 2 * max(map(len, plain_train.src_ids))  # joins of up to 5 captions
    assert any(
        "long examples: " in r.getMessage() and "of 1500 training pairs" in r.getMessage() for r in caplog.records
    )
    _, again, _ = prepare_data(config)  # a resumed run prepares the very same examples
    assert [list(x) for x in again.src_ids] == [list(x) for x in train.src_ids]


# -- evaluation with --concat ----------------------------------------------------------------


def test_evaluate_scores_long_inputs_with_length_ratios(trained_run, tmp_path, one_thread):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "best.pt", run / "best.pt")
    report = evaluate_run(run, buckets=LONG_BUCKETS, n_heatmaps=1, bootstrap=20, concat=3)
    names = ["test_2016_flickr", "test_2016_flickr+k2", "test_2016_flickr+k3"]
    assert names[1:] == [n for n in report["splits"] if n.startswith("test_2016_flickr+")]
    assert [report["splits"][n]["n_sentences"] for n in names] == [40, 20, 13]
    for name in names:
        buckets = report["splits"][name]["buckets"]
        assert [b["range"] for b in buckets][-2:] == ["71-80", "81+"] and sum(b["n"] for b in buckets) > 0
        assert all((b["length_ratio"] is None) == (b["n"] == 0) for b in buckets)
        assert (
            len((run / "eval" / "greedy" / f"{name}.hyp.txt").read_text().splitlines())
            == len(buckets) * 0
            + {
                40: 40,
                20: 20,
                13: 13,
            }[report["splits"][name]["n_sentences"]]
        )
    out = run / "eval" / "greedy"
    assert not list(out.glob("attention_*+k*.png"))  # heatmaps for natural sentences only
    assert "output / reference length" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--concat", "0"], "--concat 0 is out of range"), (["--concat", "17"], "--concat 17 is out of range")],
)
def test_evaluate_concat_out_of_range_is_one_line(trained_run, capsys, args, message):
    status = evaluate_main(["--run", str(trained_run), *args])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


# -- the study, end to end -------------------------------------------------------------------

STUDY_TINY = [t for t in TINY if not t.startswith("train.valid_max_sentences")]


def study(args, root, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SEQ2SEQ_DATA_DIR": str(root), "PYTHONUNBUFFERED": "1"}
    import os

    env = {**os.environ, **env}
    command = [sys.executable, "scripts/length_study.py", "--bootstrap", "20", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.slow
def test_a_tiny_study_trains_both_regimes_and_writes_every_bucket(tmp_path):
    root = tmp_path / "corpora"
    write_corpus(root / "multi30k", {"train": 400, "val": 16, "test_2016_flickr": 16, "test_2017_flickr": 16})
    out = tmp_path / "study"
    args = ["--steps", "4", "--concat", "8", "--out", str(out), "--", *STUDY_TINY, "train.valid_every=4"]
    args.append("train.max_output_ratio=1.0")  # untrained models emit their longest output: keep it short
    first = study(args, root, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads((out / "length_study.json").read_text())
    assert list(result["regimes"]) == ["natural", "long"]
    for entry in result["regimes"].values():
        assert list(entry["runs"]) == ["none", "luong", "bahdanau"]
        for variant, runs in entry["runs"].items():
            assert (
                runs[0]["steps"] == 4
                and list(runs[0]["by_k"]) == [str(k) for k in range(1, 9)]
                or [k for k in runs[0]["by_k"]] == list(range(1, 9))
            )
            buckets = entry["long inputs"][variant]
            assert [b["range"] for b in buckets] == [
                "1-10",
                "11-20",
                "21-30",
                "31-40",
                "41-50",
                "51-60",
                "61-70",
                "71-80",
                "81+",
            ]
            assert buckets[-1]["n"] > 0 and all(b["n"] > 0 for b in buckets)  # k = 8: ~100 words
            assert set(entry["natural"]) == {"test_2016_flickr", "test_2017_flickr"}
        assert [g["range"] for g in entry["gaps"]["bahdanau"]][-1] == "81+"
        assert all(g["ci95"] is not None for g in entry["gaps"]["luong"])
    long_run = out / "long" / "bahdanau-seed1234"
    config = json.loads((long_run / "config.json").read_text())
    assert config["data"]["long_examples"]["fraction"] == 0.25 and config["train"]["max_steps"] == 4
    assert (out / "length_study.png").read_bytes()[:4] == b"\x89PNG"
    from seq2seq.explorer import read_page_data

    page = read_page_data(out / "explorer_long.html")  # the joined inputs, models side by side
    assert [m["name"].split()[0] for m in page["models"]] == ["none", "luong", "bahdanau"]
    assert any(s["split"] == "test_2016_flickr+k8" for s in page["sentences"])
    md = (out / "length_study.md").read_text()
    assert "## long training: BLEU by k" in md and "| bahdanau − none |" in md and "81+" in md
    before = (long_run / "best.pt").stat().st_mtime_ns
    again = study(args, root, tmp_path)  # the same command: nothing retrained, evaluations reused
    assert again.returncode == 0 and again.stdout.count("finished: ") == 6 and "evaluating" not in again.stdout
    assert (long_run / "best.pt").stat().st_mtime_ns == before
    for entry in result["regimes"].values():  # every seed's figures are kept, not only the means
        assert entry["seeds"] == [1234]
        record = entry["runs"]["bahdanau"][0]
        assert [b["bleu"] for b in record["long inputs"]] == [b["bleu"] for b in entry["long inputs"]["bahdanau"]]
        assert [g["gap"] for g in record["gaps"]] == [g["gap"] for g in entry["gaps"]["bahdanau"]]


@pytest.mark.slow
def test_a_study_merges_the_seeds_of_an_earlier_result_and_refuses_one_of_other_settings(tmp_path):
    root = tmp_path / "corpora"
    write_corpus(root / "multi30k", {"train": 300, "val": 16, "test_2016_flickr": 12, "test_2017_flickr": 12})
    out = tmp_path / "study"
    args = ["--steps", "2", "--regimes", "long", "--concat", "2", "--out", str(out), "--", *STUDY_TINY]
    args += ["train.valid_every=2", "train.max_output_ratio=1.0"]
    first = study(args, root, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads((out / "length_study.json").read_text())
    earlier = json.loads(json.dumps(result))  # the same figures, as if seed 1299 had been run elsewhere
    for records in earlier["regimes"]["long"]["runs"].values():
        for record in records:
            record["seed"], record["valid_bleu"] = 1299, record["valid_bleu"] + 10.0
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    merged = study(["--runs", str(out), "--concat", "2", "--merge", str(tmp_path / "earlier.json")], root, tmp_path)
    assert merged.returncode == 0, merged.stderr[-3000:]
    entry = json.loads((out / "length_study.json").read_text())["regimes"]["long"]
    assert entry["seeds"] == [1234, 1299] and [r.get("merged", False) for r in entry["runs"]["luong"]] == [False, True]
    assert [b["bleu"] for b in entry["long inputs"]["luong"]] == [
        b["bleu"] for b in result["regimes"]["long"]["long inputs"]["luong"]
    ]  # the mean of two equal seeds is that seed
    assert "long: 2 (1234, 1299)" in merged.stdout and "long seed 1299" in merged.stdout
    again = study(["--runs", str(out), "--concat", "2", "--merge", str(out / "length_study.json")], root, tmp_path)
    assert json.loads((out / "length_study.json").read_text())["regimes"]["long"]["seeds"] == [1234, 1299]
    assert again.returncode == 0  # seeds on disk are not counted twice
    earlier["steps"] = 3
    (tmp_path / "other.json").write_text(json.dumps(earlier))
    other = study(["--runs", str(out), "--concat", "2", "--merge", str(tmp_path / "other.json")], root, tmp_path)
    assert other.returncode == 2 and other.stderr == "error: --merge: the earlier study has steps 3, this one 2\n"
    means_only = json.loads(json.dumps(result))
    for records in means_only["regimes"]["long"]["runs"].values():
        for record in records:
            del record["long inputs"]
    (tmp_path / "means.json").write_text(json.dumps(means_only))
    means = study(["--runs", str(out), "--concat", "2", "--merge", str(tmp_path / "means.json")], root, tmp_path)
    assert means.returncode == 2 and "keeps no per-seed buckets" in means.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be at least 1"),
        (["--concat", "17"], "--concat 17 is out of range"),
        (["--regimes", "short"], "--regimes 'short': choose from natural, long"),
    ],
)
def test_study_options_out_of_range_exit_2(tmp_path, args, message):
    result = study([*args, "--out", str(tmp_path / "study")], tmp_path, tmp_path)
    assert result.returncode == 2 and message in result.stderr and not (tmp_path / "study").exists()


@pytest.mark.slow
def test_study_refuses_a_corpus_without_test_splits_or_a_k_the_filter_drops(tmp_path):
    root = tmp_path / "corpora"
    write_corpus(root / "multi30k", {"train": 200, "val": 8})  # no test split
    no_test = study(["--steps", "2", "--out", str(tmp_path / "a"), "--", *STUDY_TINY], root, tmp_path)
    assert (
        no_test.returncode == 2
        and no_test.stderr.startswith("error: corpus file")
        and "test_2016_flickr" in no_test.stderr
    )
    assert no_test.stderr.count("\n") == 1 and not (tmp_path / "a").exists()
    write_corpus(root / "multi30k", {"test_2016_flickr": 20, "test_2017_flickr": 20})
    too_long = study(
        ["--steps", "2", "--out", str(tmp_path / "b"), "--", *STUDY_TINY, "data.filter.max_len=30"], root, tmp_path
    )
    assert too_long.returncode == 2 and "builds examples the length filter drops" in too_long.stderr
    assert too_long.stderr.count("\n") == 1 and not (tmp_path / "b").exists()


def test_study_variants_name_a_wiring_and_optionally_heads_or_a_transformer(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("length_study", REPO / "scripts" / "length_study.py")
    study_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study_module)
    assert study_module.parse_variants("bahdanau-4heads,luong") == ("none", "bahdanau-4heads", "luong")
    assert study_module.variant_overrides("luong-4heads") == ["attention=luong", "attention.heads=4"]
    assert study_module.variant_overrides("bahdanau") == ["attention=bahdanau"]
    assert study_module.parse_variants("transformer,transformer-rope") == ("none", "transformer", "transformer-rope")
    assert study_module.variant_overrides("transformer") == ["model=transformer"]
    assert study_module.variant_overrides("transformer-relative") == ["model=transformer", "model.positions=relative"]
    bad = subprocess.run(
        [sys.executable, "scripts/length_study.py", "--variants", "none,bahdanau-four"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith(
        "bahdanau-four: a variant is none, luong or bahdanau, optionally with -<N>heads, "
        "or transformer, optionally with -sinusoidal, -learned, -relative or -rope"
    )


def test_a_study_resumes_a_run_stopped_by_a_signal_instead_of_counting_it_finished(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("length_study", REPO / "scripts" / "length_study.py")
    study_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study_module)
    run = tmp_path / "none-seed1234"
    run.mkdir()
    (run / "best.pt").write_bytes(b"")  # a validation before the stop wrote one
    for stop, done in [("signal SIGTERM", False), ("max_time", False), ("max_steps", True), ("early stopping", True)]:
        (run / "metrics.json").write_text(json.dumps({"stop": stop, "step": 609}))
        assert study_module.finished(run) is done, stop
    (run / "metrics.json").write_text("{")  # killed while writing it
    assert not study_module.finished(run)


def test_reanalysing_a_study_takes_the_models_it_holds_when_none_are_named(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("length_study", REPO / "scripts" / "length_study.py")
    study_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study_module)
    for run in ["natural/none-seed1234", "natural/transformer-seed1234", "natural/bahdanau-seed1234"]:
        (tmp_path / run).mkdir(parents=True)
    for run in ["long/transformer-seed1234", "long/none-seed1234", "long/bahdanau-seed1234", "long/luong-seed1235"]:
        (tmp_path / run).mkdir(parents=True)
    assert study_module.variants_on_disk(tmp_path) == "none,bahdanau,transformer"  # in both regimes, the arc's order
    assert study_module.variants_on_disk(tmp_path / "nothing") is None
