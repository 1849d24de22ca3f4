"""Nothing lost, nothing mixed: the run-dir lock, the corpus fingerprint on resume, failed writes, progress lines."""

import gzip
import json
import logging
import os
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, TINY, compose, events, write_corpus
from seq2seq.errors import CheckpointError, DataError, RunDirError
from seq2seq.training import train
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.training.rundir import RunDirLock

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
SCALARS = {"train/loss", "train/ppl", "train/lr", "train/grad_norm", "train/tokens_per_s"}

# -- the lock --------------------------------------------------------------------------------


def test_a_second_owner_is_refused_with_the_holders_pid(tmp_path):
    with RunDirLock(tmp_path / "run"):
        (tmp_path / "run" / "train.log").write_text("the first run's\n")
        holder = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from seq2seq.training.rundir import RunDirLock; RunDirLock({str(tmp_path / 'run')!r}).__enter__()",
            ],
            capture_output=True,
            text=True,
        )
        assert holder.returncode == 1 and f"is in use by another trainer (PID {os.getpid()})" in holder.stderr
    with RunDirLock(tmp_path / "run"):  # released at the end: the same run can be resumed
        pass
    assert (tmp_path / "run" / "train.log").read_text() == "the first run's\n"


def test_a_run_that_never_started_leaves_no_directory(tmp_path):
    with pytest.raises(DataError):
        with RunDirLock(tmp_path / "run"):
            raise DataError("no corpus")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_second_trainer_into_a_running_run_dir_is_refused_and_the_first_finishes_untouched(corpus_root, tmp_path):
    out = tmp_path / "run"
    env = {**ENV, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    first = [sys.executable, "train.py", *TINY, "attention=bahdanau", "train.max_steps=40", f"hydra.run.dir={out}"]
    proc = subprocess.Popen(first, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        second = [sys.executable, "train.py", *TINY, "attention=luong", "train.max_steps=5", f"hydra.run.dir={out}"]
        refused = subprocess.run(second, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    finally:
        proc.wait(timeout=300)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"is in use by another trainer (PID {proc.pid})" in refused.stderr
    assert proc.returncode == 0
    assert json.loads((out / "config.json").read_text())["attention"]["type"] == "bahdanau"
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 40
    assert (
        len(list(out.glob("events.out.tfevents.*"))) == 1 and "attention=luong" not in (out / "train.log").read_text()
    )


# -- the corpus on resume --------------------------------------------------------------------


def copy_corpus(src_root, dst_root):
    (dst_root / "multi30k").mkdir(parents=True)
    for path in (src_root / "multi30k").iterdir():
        (dst_root / "multi30k" / path.name).write_bytes(path.read_bytes())
    return dst_root


@pytest.mark.slow
def test_resume_refuses_a_changed_corpus_and_accepts_a_moved_one(corpus_root, tmp_path, one_thread):
    first = copy_corpus(corpus_root, tmp_path / "first")
    out = tmp_path / "run"
    train(compose([*TINY, f"data.root={first}", "train.max_steps=10"]), out)
    config_before = (out / "config.json").read_text()
    shorter = tmp_path / "shorter"
    write_corpus(shorter / "multi30k", {"train": 300, "val": 40})
    with pytest.raises(
        RunDirError, match=r"corpus differs .*\(train split: 1,500 pairs then, 300 now.*resume_data=changed"
    ):
        train(compose([*TINY, f"data.root={shorter}", "train.max_steps=20", "train.resume=true"]), out)
    shuffled = copy_corpus(corpus_root, tmp_path / "shuffled")
    path = shuffled / "multi30k" / "train.en.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    path.write_bytes(gzip.compress("".join(lines[1:] + lines[:1]).encode()))
    with pytest.raises(RunDirError, match=r"1,500 pairs then, 1,500 now \(same count, different text\)"):
        train(compose([*TINY, f"data.root={shuffled}", "train.max_steps=20", "train.resume=true"]), out)
    assert (out / "config.json").read_text() == config_before  # nothing in the run dir changed
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 10
    moved = copy_corpus(corpus_root, tmp_path / "moved")  # the same content elsewhere resumes
    assert train(compose([*TINY, f"data.root={moved}", "train.max_steps=15", "train.resume=true"]), out)["step"] == 15
    changed = [*TINY, f"data.root={shorter}", "train.max_steps=20", "train.resume=true", "train.resume_data=changed"]
    assert train(compose(changed), out)["step"] == 20


# -- train.resume=auto: one command for the first start and every restart -------------------


def test_resume_auto_starts_fresh_then_continues_and_says_which(corpus_root, tmp_path, one_thread, caplog):
    caplog.set_level(logging.INFO, logger="seq2seq")  # as train.py sets it: train.log gets the INFO lines
    out = tmp_path / "run"
    auto = [*TINY, f"data.root={corpus_root}", "train.resume=auto", "train.valid_every=1000"]
    assert train(compose([*auto, "train.max_steps=10"]), out)["step"] == 10
    assert f"train.resume=auto: no checkpoint in {out}, starting a new run" in (out / "train.log").read_text()
    assert train(compose([*auto, "train.max_steps=15"]), out)["step"] == 15
    assert f"train.resume=auto: {out / 'last.pt'} exists, resuming at step 10" in (out / "train.log").read_text()
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 15
    shorter = tmp_path / "shorter"  # every check of train.resume=true still applies
    write_corpus(shorter / "multi30k", {"train": 300, "val": 40})
    with pytest.raises(RunDirError, match=r"corpus differs .*1,500 pairs then, 300 now"):
        train(compose([*TINY, f"data.root={shorter}", "train.resume=auto", "train.max_steps=20"]), out)
    with pytest.raises(RunDirError, match="cannot change the model or data.*model.decoder_size"):
        train(compose([*auto, "model.decoder_size=32", "train.max_steps=20"]), out, ["model.decoder_size=32"])


def test_resume_auto_refuses_a_dir_with_only_best_pt(trained_run, tmp_path):
    (tmp_path / "best.pt").write_bytes((trained_run / "best.pt").read_bytes())
    with pytest.raises(RunDirError, match="holds best.pt but no last.pt.*would overwrite best.pt"):
        train(compose([*TINY, "train.resume=auto"]), tmp_path)
    assert (tmp_path / "best.pt").read_bytes() == (trained_run / "best.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == ["best.pt"]


def test_resume_takes_true_false_or_auto():
    from seq2seq.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.resume.*true, false or auto"):
        compose([*TINY, "train.resume=sometimes"])


# -- failed writes ---------------------------------------------------------------------------


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"config": {}, "vocab": {}, "model": {"w": torch.ones(2)}}, path)

    def file_too_large(obj, handle):
        handle.write(b"PK partial")
        raise OSError(27, "File too large")

    monkeypatch.setattr(torch, "save", file_too_large)
    with pytest.raises(
        CheckpointError,
        match=r"could not write checkpoint .*last.pt \(\[Errno 27\] File too large\); the previous one is kept",
    ):
        save_checkpoint({"config": {}, "vocab": {}, "model": {}}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


@pytest.mark.slow
def test_a_run_that_cannot_write_its_checkpoint_exits_2_with_one_line(corpus_root, tmp_path):
    out = tmp_path / "run"
    env = {**ENV, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    args = [sys.executable, "train.py", *TINY, "train.max_steps=30", f"hydra.run.dir={out}"]
    first = subprocess.run(
        args[:-2] + ["train.max_steps=10", args[-1]], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    size = (out / "last.pt").stat().st_size
    limit = f"ulimit -f {size // 2048}; "  # blocks of 512 bytes: a quarter of a checkpoint
    resumed = subprocess.run(
        ["bash", "-c", limit + " ".join(f"'{a}'" for a in [*args, "train.resume=true"])],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr, resumed.stderr
    assert resumed.stderr.splitlines()[-1].startswith("error: could not write checkpoint ")
    assert "the previous one is kept" in resumed.stderr
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == 10


# -- a trainer that talks --------------------------------------------------------------------


@pytest.mark.slow
def test_progress_lines_reach_the_log_off_a_terminal_and_a_short_run_logs_every_tag(corpus_root, tmp_path):
    out = tmp_path / "run"
    env = {**ENV, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    args = [sys.executable, "train.py", *[t for t in TINY if not t.startswith("train.log_every")]]
    args += ["train.max_steps=60", "train.log_every=25", f"hydra.run.dir={out}"]
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    log = (out / "train.log").read_text()
    for step in ("25/60", "50/60", "60/60"):  # every log_every, and the last partial window
        assert f"step {step} | epoch " in log and f"step {step} | epoch " in result.stderr
    assert " tok/s | " in log and "ETA" in log and f"run dir: {out}" in log
    assert f"translate: seq2seq-translate --checkpoint {out / 'best.pt'}" in log
    assert f"evaluate:  make eval RUN={out}" in log
    assert "Generating" not in result.stderr and "Map:" not in result.stderr  # no datasets bars in a redirect
    short = tmp_path / "short"
    config = compose([*[t for t in TINY if not t.startswith("train.log_every")], f"data.root={corpus_root}"])
    config.train.max_steps = 12  # shorter than the default log_every (50)
    train(config, short)
    assert SCALARS <= set(events(short).Tags()["scalars"])
