"""Crashes: a run killed (SIGKILL) at the worst moments resumes to exactly the run never killed.

``SEQ2SEQ_CRASH_AT=<point>:<n>`` makes the trainer kill itself the n-th time it reaches a point
(:mod:`seq2seq.training.faults`); ``scripts/soak.py`` does the same at random moments for longer runs.
"""

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY, compose, events
from seq2seq.errors import RunDirError
from seq2seq.history import read as read_history
from seq2seq.training import TrainingError, train
from seq2seq.training.checkpoint import load_checkpoint

BASE = [*TINY, "attention=bahdanau", "model.dropout=0.2", "train.max_steps=30"]


def curve(run_dir, tag):
    """{step: value}, the latest write winning: a resumed run re-logs the steps after its checkpoint."""
    points = sorted(events(run_dir).Scalars(tag), key=lambda e: e.wall_time)
    return {e.step: e.value for e in points}


@pytest.fixture(scope="module")
def reference(corpus_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    train(compose([*BASE, f"data.root={corpus_root}"]), out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("crash_at", "resume_from", "partial"),
    [
        ("step:15", 10, None),  # between the backward pass and the update of step 15
        ("checkpoint:2", 10, ".last.pt.tmp"),  # last.pt at step 20 written to its temporary file, not renamed
        ("checkpoint:3", 20, ".best.pt.tmp"),  # last.pt at step 20 landed, best.pt not yet renamed
        ("validation:1", 10, None),  # validation at step 20, before decoding
    ],
    ids=["mid-step", "mid-last-write", "mid-best-write", "mid-validation"],
)
def test_killed_run_resumes_to_the_same_weights_and_curve(
    crash_at, resume_from, partial, reference, corpus_root, tmp_path
):
    out = tmp_path / "run"
    env = {**os.environ, "SEQ2SEQ_CRASH_AT": crash_at, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    killed = subprocess.run(
        [sys.executable, "train.py", *BASE, f"hydra.run.dir={out}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr  # SIGKILL: no handler ran
    # last.pt is written every 10 steps; the crash left the newest complete one in place
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == resume_from
    assert [p.name.startswith(partial) for p in out.glob(".*.tmp*")] == ([True] if partial else [])

    result = train(compose([*BASE, f"data.root={corpus_root}", "train.resume=true"]), out)
    assert result["step"] == 30 and not list(out.glob(".*.tmp*"))
    want = load_checkpoint(reference / "last.pt")
    got = load_checkpoint(out / "last.pt")
    for key, value in want["model"].items():
        torch.testing.assert_close(got["model"][key], value, rtol=0, atol=0)
    assert got["progress"]["best_bleu"] == want["progress"]["best_bleu"]
    best_want, best_got = load_checkpoint(reference / "best.pt"), load_checkpoint(out / "best.pt")
    assert best_got["progress"]["step"] == best_want["progress"]["step"]
    for key, value in best_want["model"].items():
        torch.testing.assert_close(best_got["model"][key], value, rtol=0, atol=0)
    for tag in ("train/loss", "valid/bleu"):
        assert curve(out, tag) == curve(reference, tag), tag
    assert sorted(curve(out, "train/loss")) == [5, 10, 15, 20, 25, 30]
    # the explorer's training slider: each validation once, the same attention as the run never killed
    assert read_history(out) == read_history(reference) and [e["step"] for e in read_history(out)[0]] == [20, 30]


@pytest.mark.slow
def test_the_same_command_after_a_kill_continues_with_resume_auto(reference, corpus_root, tmp_path):
    """A preempted VM or a SLURM requeue re-runs the very command that was killed."""
    out = tmp_path / "run"
    command = [sys.executable, "train.py", *BASE, "train.resume=auto", f"hydra.run.dir={out}"]
    env = {**os.environ, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    killed = subprocess.run(
        command, cwd=REPO, env={**env, "SEQ2SEQ_CRASH_AT": "step:25"}, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    log = (out / "train.log").read_text()
    assert "starting a new run" in log and "exists, resuming at step 20" in log
    want, got = load_checkpoint(reference / "last.pt"), load_checkpoint(out / "last.pt")
    for key, value in want["model"].items():
        torch.testing.assert_close(got["model"][key], value, rtol=0, atol=0)


def nan_at(calls, monkeypatch):
    """Make the training loss NaN on the given training steps (validation's loss is another function)."""
    import seq2seq.training.loss as losses

    real, seen = losses.generator_loss, {"n": 0}

    def loss(features, generator, target, smoothing):
        loss_sum, nll_sum = real(features, generator, target, smoothing)
        seen["n"] += 1
        if seen["n"] in calls:
            return loss_sum * float("nan"), nll_sum
        return loss_sum, nll_sum

    monkeypatch.setattr(losses, "generator_loss", loss)


def test_nan_loss_stops_with_the_last_good_checkpoint(corpus_root, tmp_path, monkeypatch, one_thread):
    nan_at({13}, monkeypatch)
    with pytest.raises(TrainingError, match=r"became nan at step 13.*last good checkpoint is .*last\.pt"):
        train(compose([*BASE, f"data.root={corpus_root}"]), tmp_path)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["progress"]["step"] == 10
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


def test_nan_loss_can_skip_the_batch(corpus_root, tmp_path, monkeypatch, one_thread):
    nan_at({4, 13}, monkeypatch)
    config = compose([*BASE, f"data.root={corpus_root}", "train.max_steps=16", "train.nonfinite=skip"])
    result = train(config, tmp_path)
    assert result["step"] == 16 and result["skipped_batches"] == 2
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["progress"]["skipped"] == 2
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


def test_skipping_gives_up_on_a_run_of_bad_batches(corpus_root, tmp_path, monkeypatch, one_thread):
    nan_at(set(range(3, 100)), monkeypatch)
    config = compose([*BASE, f"data.root={corpus_root}", "train.nonfinite=skip", "train.max_skips=4"])
    with pytest.raises(TrainingError, match="4 batches in a row"):
        train(config, tmp_path)


@pytest.mark.slow
def test_submitit_requeues_a_signalled_job_and_it_finishes_as_never_interrupted(reference, corpus_root, tmp_path):
    """SLURM through Hydra, on submitit's local executor: the scheduler's SIGUSR2 mid-step saves last.pt,
    submitit requeues the job with the same command, and train.resume=auto continues it."""
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=job",
        *BASE,
        "train.resume=auto",
    ]
    env = {
        **os.environ,
        "SEQ2SEQ_DATA_DIR": str(corpus_root),
        "SEQ2SEQ_CRASH_AT": "step:15",
        "SEQ2SEQ_CRASH_SIGNAL": "USR2",
        "SEQ2SEQ_CRASH_ONCE": str(tmp_path / "signalled"),
    }
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (sweep / "job" / "train.log").read_text()
    assert "received SIGUSR2: saving and stopping after this step" in log
    assert "exists, resuming at step 15" in log and "stopping at step 30" in log
    (job_log,) = sweep.glob(".submitit/*/*_0_log.err")
    assert "passing SIGUSR2 on to submitit, which requeues this job" in job_log.read_text()
    assert "Requeued job" in job_log.read_text() and "Job completed successfully" in job_log.read_text()
    want, got = load_checkpoint(reference / "last.pt"), load_checkpoint(sweep / "job" / "last.pt")
    for key, value in want["model"].items():
        torch.testing.assert_close(got["model"][key], value, rtol=0, atol=0)


def test_a_run_under_a_scheduler_that_requeues_needs_resume_auto(corpus_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    with pytest.raises(RunDirError, match=r"under submitit, .* add train\.resume=auto .*\(train\.resume=False now\)"):
        train(compose([*BASE, f"data.root={corpus_root}"]), tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")
    with pytest.raises(RunDirError, match=r"under torchrun --max-restarts, .*train\.resume=True now"):
        train(compose([*BASE, f"data.root={corpus_root}", "train.resume=true"]), tmp_path / "run")


def test_the_scheduler_warning_signal_follows_submitit(monkeypatch):
    import signal

    from seq2seq.training.signals import scheduler, scheduler_signals

    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.delenv("TORCHELASTIC_MAX_RESTARTS", raising=False)
    assert scheduler() is None and scheduler_signals() == ()
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert scheduler() == "submitit" and scheduler_signals() == (signal.SIGUSR2,)
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "SIGUSR1")
    assert scheduler_signals() == (signal.SIGUSR1,)
