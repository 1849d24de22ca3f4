"""Alignments forming over training: one history entry per validation, kept tidy across resumes,
and the run's page built from it (``python -m seq2seq.explorer RUN``)."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, TINY, compose, events
from seq2seq.attention_rows import weights_of
from seq2seq.explorer import NO_SCORES, read_page_data
from seq2seq.explorer import main as explorer_main
from seq2seq.history import HISTORY_FILE, SCORE_KEYS, append, keep_until, page_history, read


def test_every_validation_adds_one_entry_of_the_heatmap_sentences(trained_run):
    entries, warnings = read(trained_run)
    assert not warnings
    assert [e["step"] for e in entries] == [20, 40, 60]  # valid_every=20, max_steps=60
    images = {e.step for e in events(trained_run).Images("attention/0")}
    assert images == {20, 40, 60}  # the same validations TensorBoard shows
    config = json.loads((trained_run / "config.json").read_text())
    assert config["train"]["n_heatmaps"] == 2
    for entry in entries:
        assert len(entry["sentences"]) == 2
        for s in entry["sentences"]:
            assert len(s["att"]) == len(s["op"]) and s["sp"][-1] == "</s>"
            assert all(945 <= sum(p for _, p in row) <= 1001 for row in s["att"])
            assert all(j < len(s["sp"]) for row in s["att"] for j, _ in row)
    assert entries[0]["sentences"][0]["src"] == entries[-1]["sentences"][0]["src"]  # fixed sentences


def test_resume_drops_what_a_kill_left_after_the_checkpoint_and_damaged_lines(tmp_path):
    for step in (10, 20, 30):
        append(
            tmp_path,
            step,
            [{"src": "a", "sp": ["a", "</s>"], "hyp": "b", "op": ["b", "</s>"], "att": [[[0, 1000]]] * 2}],
        )
    with open(tmp_path / HISTORY_FILE, "a") as f:
        f.write('{"step": 40, "sentences": [{"src"')  # a kill mid-write
    entries, warnings = read(tmp_path)
    assert [e["step"] for e in entries] == [10, 20, 30] and len(warnings) == 1 and "line 4" in warnings[0]
    keep_until(tmp_path, 20)  # resumed from last.pt at step 20: validation 30 is done again
    entries, warnings = read(tmp_path)
    assert [e["step"] for e in entries] == [10, 20] and not warnings
    before = (tmp_path / HISTORY_FILE).read_bytes()
    keep_until(tmp_path, 20)
    assert (tmp_path / HISTORY_FILE).read_bytes() == before and not list(tmp_path.glob("*.tmp"))


def run_explorer(*args):
    return subprocess.run(
        [sys.executable, "-m", "seq2seq.explorer", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_run_page_has_the_training_slider_data(trained_run, tmp_path):
    page = tmp_path / "run.html"
    done = run_explorer(trained_run, "--out", page)
    assert done.returncode == 0 and f"wrote {page}" in done.stdout, done.stderr
    data = read_page_data(page)
    history, _ = page_history(trained_run)
    assert data["history"] == history and history["steps"] == [20, 40, 60]
    assert [s["src"] for s in data["sentences"]] == [s["src"] for s in history["sentences"]]
    assert [s["out"][0]["hyp"] for s in data["sentences"]] == [f["hyp"] for f in history["frames"][-1]]
    assert data["models"][0]["attention"]["type"] == "bahdanau" and "history_note" not in data


def test_a_run_without_history_or_with_a_damaged_one_still_gets_a_page(trained_run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(trained_run / "config.json", old / "config.json")  # a run from before the history file
    done = run_explorer(old)
    assert done.returncode == 0, done.stderr
    data = read_page_data(old / "explorer.html")
    assert "history" not in data and data["history_note"].startswith("No training history")
    lines = (trained_run / HISTORY_FILE).read_text().splitlines()
    (old / HISTORY_FILE).write_text(lines[0] + "\n" + lines[1][:40] + "\n" + lines[2] + "\n")
    done = run_explorer(old)
    assert done.returncode == 0 and done.stderr.count("warning:") == 1 and "line 2 is damaged" in done.stderr
    data = read_page_data(old / "explorer.html")
    assert data["history"]["steps"] == [20, 60] and "damaged" in data["history_note"]


def test_the_run_page_refuses_what_is_not_a_run(tmp_path):
    for target in (tmp_path / "missing", tmp_path):
        done = run_explorer(target)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def none_run(corpus_root, tmp_path_factory):
    from seq2seq.training import train

    run = tmp_path_factory.mktemp("none") / "none"
    train(compose([*TINY, "attention=none", f"data.root={corpus_root}", "train.max_steps=20"]), run)
    return run


def test_a_model_without_attention_writes_no_history_and_says_so(none_run):
    assert not (none_run / HISTORY_FILE).exists()
    done = run_explorer(none_run)
    assert done.returncode == 0, done.stderr
    data = read_page_data(none_run / "explorer.html")
    assert "history" not in data and data["history_note"].startswith("attention=none")


def test_the_history_keeps_every_score_of_its_sentences(trained_run):
    entries, _ = read(trained_run)
    for entry in entries:
        for s in entry["sentences"]:
            S = len(s["sp"])
            assert len(s["sa"]) == len(s["op"]) == len(s["m"]) == len(s["z"]) == len(s["cn"]) and len(s["vn"]) == S
            assert all(len(row) // 2 == S for row in s["sa"])  # every source position's score, every step
            for row, att in zip(weights_of(s), s["att"]):  # the scores' softmax is the weights the slider draws
                assert abs(sum(row.values()) - 1) < 1e-6
                assert all(abs(row[j] - p / 1000) <= 0.002 for j, p in att)


def test_make_explore_pages_carry_the_scores_or_say_why_not(trained_run, tmp_path, capsys):
    page = tmp_path / "run.html"
    assert explorer_main(["--run", str(trained_run), "--out", str(page)]) == 0  # make explore passes --run
    assert capsys.readouterr().out.strip() == f"wrote {page}"
    data = read_page_data(page)
    outs = [s["out"][0] for s in data["sentences"]]
    assert all("sa" in o and "att" not in o for o in outs) and "no_scores" not in data["models"][0]["attention"]
    assert "panel" not in data["history"] and not any(
        k in f for fr in data["history"]["frames"] for f in fr for k in SCORE_KEYS
    )
    old = tmp_path / "old"  # a run whose history was written before it kept scores
    old.mkdir()
    shutil.copy(trained_run / "config.json", old / "config.json")
    lines = [json.loads(line) for line in (trained_run / HISTORY_FILE).read_text().splitlines()]
    for entry in lines:
        entry["sentences"] = [{k: v for k, v in s.items() if k not in SCORE_KEYS} for s in entry["sentences"]]
    (old / HISTORY_FILE).write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert explorer_main([str(old)]) == 0  # the run as a positional argument works too
    data = read_page_data(old / "explorer.html")
    assert data["models"][0]["attention"]["no_scores"] == NO_SCORES and "not the raw scores" in NO_SCORES
    assert all("att" in s["out"][0] and "sa" not in s["out"][0] for s in data["sentences"])


def test_the_explorer_command_without_a_run_names_the_options_it_takes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert explorer_main([]) == 2
    err = capsys.readouterr().err
    assert err == "error: no run with a best.pt under outputs/; train one first or pass --run DIR\n"
    with pytest.raises(SystemExit) as exit_:
        explorer_main(["a", "--run", "b"])
    assert exit_.value.code == 2 and "two runs given" in capsys.readouterr().err
