"""A few real training steps per attention variant on real Multi30k lines."""

import io
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
import torch

from conftest import ATTENTIONS, REPO, TINY, compose, events
from seq2seq.data.vocab import EOS
from seq2seq.errors import CheckpointError, ConfigError, RunDirError
from seq2seq.hardware import bf16_lstm_runs, native_bf16, resolve_precision
from seq2seq.training import Trainer, train
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.progress import Bar, SlowdownWatch
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


# -- what a run tells: train.log, the console, TensorBoard's best/* -----------------------------


def _kinds(train_log) -> list[str]:
    """Each train.log line as its kind: the level and message, numbers and paths blanked.

    The slowdown note depends on what else the machine runs, so it is left out.
    """
    lines = [line.split(" ", 2)[2] for line in train_log.read_text().splitlines()]
    return [re.sub(r"\S*/\S*|[\d.,:]+", "#", line) for line in lines if "other programs" not in line]


@pytest.mark.slow
def test_training_from_python_logs_what_train_py_logs_and_prints_its_progress(corpus_root, tmp_path):
    overrides = [*TINY, "attention=bahdanau", f"data.root={corpus_root}", "train.max_steps=12"]
    cli, api = tmp_path / "cli", tmp_path / "api"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    script = (
        f"from seq2seq import train\nfrom seq2seq.overrides import compose\ntrain(compose({overrides!r}), {str(api)!r})"
    )
    runs = {
        "cli": [sys.executable, "train.py", *overrides, f"hydra.run.dir={cli}"],
        "api": [sys.executable, "-c", script],
    }
    printed = {}
    for name, command in runs.items():
        env["SEQ2SEQ_CACHE_DIR"] = str(tmp_path / f"cache-{name}")  # both train SentencePiece
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        printed[name] = done.stderr
    assert _kinds(api / "train.log") == _kinds(cli / "train.log")
    log = (api / "train.log").read_text()
    assert "INFO model: attention=bahdanau, 1 head, " in log and ", 1 thread\n" in log
    assert log.index("INFO step 12 | valid loss") < log.index("INFO stopping at step 12 (epoch 1): max_steps")
    for line in ("step 5/12 | epoch 1 | loss ", "step 12 | valid loss ", "stopping at step 12", "best: "):
        assert line in printed["api"]  # a script that set up no logging prints train.py's lines
    assert "Warning" not in printed["api"] and "Traceback" not in printed["api"]


def test_no_best_scalars_before_a_first_validation(corpus_root, tmp_path, monkeypatch):
    """A run stopped before validating logs no best/valid_bleu (a -1 would set the chart's scale after resuming)."""
    import signal

    train_step = Trainer.train_step

    def signalled_at_step_3(self, batch, scale):
        if self.progress.step == 2:
            self.signals.received = signal.SIGTERM  # as if SIGTERM arrived during the third update
        return train_step(self, batch, scale)

    monkeypatch.setattr(Trainer, "train_step", signalled_at_step_3)
    base = [*TINY, f"data.root={corpus_root}"]
    result = train(compose([*base, "train.max_steps=20"]), tmp_path)
    assert result["stop"] == "signal SIGTERM" and result["step"] == 3
    assert not {"best/valid_bleu", "best/step"} & set(events(tmp_path).Tags()["scalars"])
    monkeypatch.setattr(Trainer, "train_step", train_step)
    train(compose([*base, "train.max_steps=20", "train.resume=true"]), tmp_path)
    best = events(tmp_path).Scalars("best/valid_bleu")
    assert [(e.step, e.value >= 0) for e in best] == [(20, True)]
    assert [e.value for e in events(tmp_path).Scalars("best/step")] == [20.0]


def test_a_failed_checkpoint_write_ends_train_log_with_its_error(corpus_root, tmp_path, monkeypatch):
    def file_too_large(obj, handle):
        handle.write(b"PK partial")
        raise OSError(27, "File too large")

    monkeypatch.setattr(torch, "save", file_too_large)  # the first checkpoint: last.pt at step 10
    with pytest.raises(CheckpointError, match="could not write checkpoint"):
        train(compose([*TINY, f"data.root={corpus_root}", "train.max_steps=30"]), tmp_path)
    last = (tmp_path / "train.log").read_text().splitlines()[-1]
    assert last.split(" ", 2)[2].startswith(f"ERROR error: could not write checkpoint {tmp_path / 'last.pt'} (")
    assert "[Errno 27] File too large); there was none before" in last and "ulimit -f" in last


def test_a_machine_busy_elsewhere_is_named_once_with_the_fix(caplog):
    caplog.set_level("WARNING", logger="seq2seq")
    watch = SlowdownWatch(threads=2, where="outputs/run")
    watch.start(load=1.5, cores=2)  # busy, but not over the cores
    for rate in (800, 5000, 5200, 4000, 1500, 2000, 1600):  # the first three set the pace; one dip is no trend
        watch.window(rate)
    assert caplog.records == []
    watch.window(1700)  # a second window in a row under a third of 5,200
    watch.window(900)
    (record,) = caplog.records
    assert record.getMessage().startswith("training runs at 1,700 tok/s, under a third of the 5,200 tok/s")
    assert "continue the run in outputs/run with train.resume=true train.threads=1" in record.getMessage()
    busy = SlowdownWatch(threads=2, where="outputs/run")
    busy.start(load=3.4, cores=2)
    busy.start(load=3.4, cores=2)
    assert caplog.records[-1].getMessage().startswith("the load average is 3.4 on 2 CPU cores before training starts")
    assert len(caplog.records) == 2 and "train.threads=1" in caplog.records[-1].getMessage()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_counts_and_times_the_whole_run_across_epochs(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())  # tqdm shows its bar on a terminal only
    bar = Bar(max_steps=100, step=10, main=True)  # a resumed run: 10 updates done
    start = bar.bar.start_t
    bar.epoch(0, batches=30, done=10)
    for _ in range(20):
        bar.update()
    bar.epoch(1, batches=30, done=0)
    bar.update()
    assert (bar.bar.n, bar.bar.total, bar.bar.start_t, bar.bar.desc) == (31, 100, start, "epoch 2: ")
    per_epoch = Bar(max_steps=None, step=0, main=True)  # no max_steps: the bar goes through each epoch
    per_epoch.epoch(2, batches=40, done=5)
    assert (per_epoch.bar.n, per_epoch.bar.total) == (5, 40)
    bar.close()
    per_epoch.close()
