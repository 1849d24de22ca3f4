"""``model=transformer`` through the product: train, checkpoint, translate, evaluate, resume after a kill, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY_TRANSFORMER, compose, events
from seq2seq.errors import RunDirError
from seq2seq.explorer import read_page_data
from seq2seq.training import train
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.translator import Translator

BASE = [*TINY_TRANSFORMER, "train.max_steps=30"]


@pytest.fixture(scope="module")
def transformer_run(corpus_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("transformer")
    train(compose([*BASE, f"data.root={corpus_root}"]), out)
    return out


@pytest.mark.slow
def test_a_transformer_run_learns_logs_and_checkpoints(transformer_run):
    acc = events(transformer_run)
    loss = [e.value for e in acc.Scalars("train/loss")]
    assert len(loss) == 6 and loss[-1] < loss[0] - 0.5
    assert [e.step for e in acc.Scalars("valid/bleu")] == [20, 30]
    assert {"valid/attention_entropy", "valid/attention_diagonal"} <= set(acc.Tags()["scalars"])
    images = set(acc.Tags()["images"])
    for i in (0, 1):  # the reported (last) cross-attention per head, every other layer's, the encoder's own
        assert {f"attention/{i}", f"attention_heads/{i}", f"attention_layers/decoder.0.cross/{i}"} <= images
        assert {f"attention_layers/encoder.0.self/{i}", f"attention_layers/encoder.1.self/{i}"} <= images
        assert f"attention_layers/decoder.1.cross/{i}" not in images  # drawn once, as attention_heads/<i>
    log = (transformer_run / "train.log").read_text()
    assert "model: transformer (2+2 layers, d 32, 4 heads, sinusoidal positions, pre-norm)" in log
    saved = json.loads((transformer_run / "config.json").read_text())
    assert saved["model"]["family"] == "transformer" and saved["model"]["positions"] == "sinusoidal"


@pytest.mark.slow
def test_a_transformer_checkpoint_translates_like_an_lstm_one(transformer_run):
    translator = Translator.from_checkpoint(transformer_run / "best.pt")  # precision auto: bf16 where it runs
    out = translator.translate(["Ein Mann fährt Fahrrad.", "", "Zwei Hunde spielen im Schnee."], beam=3)
    assert len(out) == 3 and out[1] == "" and all(isinstance(o, str) for o in out)
    hyp = translator.nbest(["Ein Hund läuft."], beam=1, return_attention=True)[0][0]
    assert hyp.attention is not None and torch.allclose(
        hyp.attention.sum(-1), torch.ones(hyp.attention.size(0)), atol=1e-2
    )
    command = [sys.executable, "-m", "seq2seq.translate", "--checkpoint", str(transformer_run / "best.pt")]
    for beam in ("1", "4"):
        done = subprocess.run(
            [*command, "--beam", beam], input="Ein Mann fährt Fahrrad.\n\nEin Hund.\n", capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("\n") == 3 and done.stdout.split("\n")[1] == ""


@pytest.mark.slow
def test_make_eval_scores_a_transformer_run(transformer_run, corpus_root):
    env = {**os.environ, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    done = subprocess.run(
        [sys.executable, "-m", "seq2seq.evaluate", "--run", str(transformer_run), "--concat", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((transformer_run / "eval" / "greedy" / "report.json").read_text())
    assert "bleu" in json.dumps(report)
    page = read_page_data(transformer_run / "eval" / "greedy" / "explorer.html")
    assert page["models"][0]["attention"]["type"] == "transformer"
    assert "modules" in page["sentences"][0]["out"][0]  # a fully stored sentence: every layer, self and cross
    frames = [frame for step in page["history"]["frames"] for frame in step]
    assert frames and all("decoder.0.cross" in frame["modules"] for frame in frames)  # the slider follows the picker


def test_resuming_an_lstm_run_as_a_transformer_is_refused(trained_run):
    config = compose([*TINY_TRANSFORMER, "train.resume=true"])
    with pytest.raises(RunDirError, match="cannot change the model"):
        train(config, trained_run)


@pytest.mark.slow
def test_a_killed_transformer_run_resumes_to_the_same_weights(transformer_run, corpus_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "SEQ2SEQ_CRASH_AT": "step:15", "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    killed = subprocess.run(
        [sys.executable, "train.py", *BASE, f"hydra.run.dir={out}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 10
    assert train(compose([*BASE, f"data.root={corpus_root}", "train.resume=true"]), out)["step"] == 30
    want, got = load_checkpoint(transformer_run / "last.pt"), load_checkpoint(out / "last.pt")
    for key, value in want["model"].items():
        torch.testing.assert_close(got["model"][key], value, rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_two_transformer_processes_match_one(corpus_root, tmp_path):
    base = [*TINY_TRANSFORMER, "model.dropout=0", "model.attention_dropout=0", "train.valid_every=5"]
    one = tmp_path / "one"
    train(compose([*base, f"data.root={corpus_root}", "train.max_steps=6"]), one)
    two = tmp_path / "two"
    env = {**os.environ, "SEQ2SEQ_DATA_DIR": str(corpus_root), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py"]
    done = subprocess.run(
        [*command, *base, "train.max_steps=6", f"hydra.run.dir={two}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    want, got = load_checkpoint(one / "last.pt")["model"], load_checkpoint(two / "last.pt")["model"]
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-5, msg=key)
