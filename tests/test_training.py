"""A few real training steps per attention variant on real Multi30k lines."""

import pytest
import torch

from conftest import ATTENTIONS, TINY, compose, events
from seq2seq.checkpoint import load_checkpoint
from seq2seq.errors import RunDirError
from seq2seq.training import train

SCALARS = {
    "train/loss",
    "train/ppl",
    "train/lr",
    "train/grad_norm",
    "train/tokens_per_s",
    "valid/loss",
    "valid/ppl",
    "valid/bleu",
    "valid/chrf",
}


@pytest.mark.slow
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_short_run_learns_logs_and_checkpoints(attention, corpus_root, tmp_path):
    config = compose([*TINY, f"attention={attention}", f"data.root={corpus_root}", "train.max_steps=40"])
    result = train(config, tmp_path)
    acc = events(tmp_path)
    tags = acc.Tags()
    assert SCALARS <= set(tags["scalars"])
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.5  # the loss falls
    heatmaps = {t for t in tags["images"] if t.startswith("attention/")}
    assert heatmaps == (set() if attention == "none" else {"attention/0", "attention/1"})
    assert any(t.startswith("valid/samples") for t in tags["tensors"])
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()
    assert result["step"] == 40 and result["stop"] == "max_steps"
    assert load_checkpoint(tmp_path / "best.pt")["config"]["attention"]["type"] == attention
    hparams = [p for p in (tmp_path / "hparams").iterdir()]
    assert hparams, "hparams sub-run with final metrics"


def test_refuses_to_overwrite_a_run(trained_run):
    before = (trained_run / "last.pt").stat().st_mtime_ns
    config = compose([*TINY, "train.max_steps=5"])
    with pytest.raises(RunDirError, match="already holds a checkpoint"):
        train(config, trained_run)
    assert (trained_run / "last.pt").stat().st_mtime_ns == before


def test_resume_needs_a_last_checkpoint(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        train(compose([*TINY, "train.resume=true"]), tmp_path)


@pytest.mark.slow
def test_resume_continues_and_matches_an_uninterrupted_run(corpus_root, tmp_path):
    base = [
        *TINY,
        "attention=luong",
        f"data.root={corpus_root}",
        "train.valid_every=1000",
        "train.checkpoint_every=1000",
        "model.dropout=0.2",
    ]
    train(compose([*base, "train.max_steps=24"]), tmp_path / "straight")
    train(compose([*base, "train.max_steps=11"]), tmp_path / "split")
    result = train(compose([*base, "train.max_steps=24", "train.resume=true"]), tmp_path / "split")
    assert result["step"] == 24  # max_steps counts updates across resumes
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_refuses_a_model_change(trained_run):
    config = compose([*TINY, "attention=bahdanau", "model.decoder_size=48", "train.resume=true"])
    with pytest.raises(RunDirError, match=r"model\.decoder_size: 64 in the checkpoint, 48 now"):
        train(config, trained_run, overrides=["model.decoder_size=48", "train.resume=true"])
