"""A few real training steps per attention variant on real Multi30k lines."""

from collections import Counter

import pytest
import torch

from conftest import ATTENTIONS, TINY, compose, events
from seq2seq.data.vocab import EOS
from seq2seq.errors import ConfigError, RunDirError
from seq2seq.hardware import bf16_lstm_runs, native_bf16, resolve_precision
from seq2seq.training import Trainer, train
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.schedule import budget_lr

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
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")  # the HPARAMS entry, in the run
    assert not (tmp_path / "hparams").exists()  # no second copy of the run
    assert 0 not in [e.step for e in acc.Scalars("valid/bleu")] and acc.Scalars("best/valid_bleu")[0].step == 40


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
        "train.scheduler=plateau",  # budget would follow max_steps, which this test changes on resume
        "train.ema=0.9",
    ]
    train(compose([*base, "train.max_steps=24"]), tmp_path / "straight")
    train(compose([*base, "train.max_steps=11"]), tmp_path / "split")
    result = train(compose([*base, "train.max_steps=24", "train.resume=true"]), tmp_path / "split")
    assert result["step"] == 24  # max_steps counts updates across resumes
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for weights in ("model", "trained_model"):  # the average (train.ema) and the trained weights
        assert set(a[weights]) == set(b[weights])
        for key in a[weights]:
            torch.testing.assert_close(a[weights][key], b[weights][key], rtol=0, atol=0)


def test_resume_with_other_batching_finishes_the_epoch_as_it_was_cut(corpus_root, tmp_path, monkeypatch, caplog):
    """Every pair is trained on once in an epoch that a resume with new batch settings splits."""
    seen = []

    def recording_step(self, batch, scale):
        seen.extend(tuple(row[: int(n)].tolist()) for row, n in zip(batch.src, batch.src_lens))
        return train_step(self, batch, scale)

    train_step = Trainer.train_step
    monkeypatch.setattr(Trainer, "train_step", recording_step)
    base = [*TINY, "attention=none", f"data.root={corpus_root}", "train.valid_every=1000"]
    train(compose([*base, "train.max_steps=7"]), tmp_path)
    assert len(seen) > 0
    overrides = ["train.batch_tokens=500", "train.pad_to_multiple=1", "train.seed=3"]
    overrides += ["train.max_steps=null", "train.max_epochs=1", "train.resume=true"]
    with caplog.at_level("WARNING", logger="seq2seq"):
        result = train(compose([*base, *overrides]), tmp_path)
    assert result["stop"] == "max_epochs"
    pairs = Trainer(compose([*base, "train.max_steps=1"]), tmp_path / "probe").train_data
    assert Counter(seen) == Counter(tuple(src) + (EOS,) for src in pairs.src_ids)
    assert "epoch 1 was cut into batches with batch_tokens=700" in caplog.text


def test_resume_refuses_a_model_change(trained_run):
    config = compose([*TINY, "attention=bahdanau", "model.decoder_size=48", "train.resume=true"])
    with pytest.raises(RunDirError, match=r"model\.decoder_size: 64 in the checkpoint, 48 now"):
        train(config, trained_run, overrides=["model.decoder_size=48", "train.resume=true"])


def test_budget_schedule_holds_the_rate_then_decays_linearly_to_min_lr():
    assert budget_lr(1e-3, 1e-5, 0.0) == 1e-3
    assert budget_lr(1e-3, 1e-5, 0.5) == pytest.approx(5e-4)  # decay_start 0: linear over the whole budget
    assert budget_lr(1e-3, 1e-5, 0.6, decay_start=0.6) == 1e-3
    assert budget_lr(1e-3, 1e-5, 0.8, decay_start=0.6) == pytest.approx(5e-4)
    assert budget_lr(1e-3, 1e-5, 1.0, decay_start=0.6) == 1e-5
    assert budget_lr(1e-3, 1e-5, 1.7, decay_start=0.6) == 1e-5  # past the budget: min_lr, never negative


@pytest.mark.slow
def test_budget_schedule_drives_the_logged_rate(corpus_root, tmp_path):
    config = compose(
        [*TINY, f"data.root={corpus_root}", "train.max_steps=40", "train.scheduler=budget", "train.decay_start=0.5"]
    )
    train(config, tmp_path)
    lrs = {e.step: e.value for e in events(tmp_path).Scalars("train/lr")}
    assert lrs[5] == pytest.approx(0.003) and lrs[20] == pytest.approx(0.003)  # held for the first half
    assert lrs[30] == pytest.approx(0.003 * (1 - 9 / 20))  # the update of step 30 saw 29 done of 40
    assert lrs[40] == pytest.approx(0.003 * (1 - 19 / 20))


def test_auto_precision_is_bf16_only_on_a_cpu_that_has_it():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:  # not Linux: auto never guesses bf16 there
        flags = set()
    native = bool(flags & {"avx512_bf16", "amx_bf16"}) and bf16_lstm_runs(cpu)
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    gpu = torch.device("cuda")  # only named: resolving auto touches no GPU
    assert resolve_precision("auto", gpu) == "fp32"


def test_bf16_where_the_device_cannot_run_it_is_refused_before_anything_is_written(corpus_root, tmp_path, monkeypatch):
    """The refusal path on every machine: the device's answer to the probe is replaced by "no"."""
    monkeypatch.setattr("seq2seq.hardware.bf16_lstm_runs", lambda device: False)
    config = compose([*TINY, f"data.root={corpus_root}", "train.max_steps=5", "train.precision=bf16"])
    with pytest.raises(ConfigError, match=r"train\.precision=bf16 but this CPU .* use train\.precision=fp32"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    native_bf16.cache_clear()  # the answer is cached per process: ask again with the probe saying no
    try:
        assert resolve_precision("auto", torch.device("cpu")) == "fp32"  # auto never picks what cannot run
    finally:
        native_bf16.cache_clear()


@pytest.mark.slow
def test_bf16_autocast_run_learns(corpus_root, tmp_path):
    """Where the CPU runs bf16 LSTMs, a bf16 run learns; where it cannot, the same run is refused."""
    config = compose([*TINY, f"data.root={corpus_root}", "train.max_steps=40", "train.precision=bf16"])
    if not bf16_lstm_runs(torch.device("cpu")):
        with pytest.raises(ConfigError, match=r"train\.precision=bf16 but .* cannot run bfloat16 LSTMs"):
            train(config, tmp_path / "run")
        assert not (tmp_path / "run").exists()
        return
    result = train(config, tmp_path)
    losses = [e.value for e in events(tmp_path).Scalars("train/loss")]
    assert losses[-1] < losses[0] - 0.5 and result["valid/bleu"] >= 0.0
    weights = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())  # fp32 master weights


def test_a_signal_during_validation_stops_there_without_another_step(corpus_root, tmp_path, monkeypatch):
    import signal

    original = Trainer.validate

    def interrupted(self):
        self.signals.received = signal.SIGTERM  # as if SIGTERM arrived while validation decoded
        return original(self)

    monkeypatch.setattr(Trainer, "validate", interrupted)
    result = train(compose([*TINY, f"data.root={corpus_root}", "train.max_steps=100"]), tmp_path)
    assert result["stop"] == "signal SIGTERM" and result["step"] == 20  # train.valid_every=20
    assert load_checkpoint(tmp_path / "last.pt")["progress"]["step"] == 20
