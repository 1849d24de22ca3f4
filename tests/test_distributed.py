"""Data-parallel training: torchrun with 2 gloo processes matches 1 process, and resumes."""

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY, compose
from seq2seq.training import train
from seq2seq.training.checkpoint import load_checkpoint

# dropout 0: the two setups then compute the same function and differ only in summation order
BASE = [*TINY, "attention=bahdanau", "model.dropout=0", "train.valid_every=5", "train.checkpoint_every=5"]
TOLERANCE = 1e-5  # absolute, on weights of magnitude ~0.1, after 8 Adam updates


def torchrun(args, corpus_root):
    env = {**os.environ, "SEQ2SEQ_DATA_DIR": str(corpus_root), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py"]
    return subprocess.run([*command, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_match_one_and_resume(corpus_root, tmp_path):
    one = tmp_path / "one"
    train(compose([*BASE, f"data.root={corpus_root}", "train.max_steps=8"]), one)

    two = tmp_path / "two"
    first = torchrun([*BASE, "train.max_steps=6", f"hydra.run.dir={two}"], corpus_root)
    assert first.returncode == 0, first.stderr[-3000:]
    saved = load_checkpoint(two / "last.pt")
    assert saved["progress"]["step"] == 6 and len(saved["rng_by_rank"]) == 2
    assert first.stderr.count("stopping at step 6") == 1  # only rank 0 logs
    assert len(list(two.glob("events.out.tfevents.*"))) == 1  # and writes events

    resumed = torchrun([*BASE, "train.max_steps=8", "train.resume=true", f"hydra.run.dir={two}"], corpus_root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr

    want = load_checkpoint(one / "last.pt")["model"]
    got = load_checkpoint(two / "last.pt")["model"]
    assert load_checkpoint(two / "last.pt")["progress"]["step"] == 8
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=TOLERANCE, msg=key)
