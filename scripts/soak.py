"""Soak test for crash recovery: kill a training run with SIGKILL at random moments, resume, compare.

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/soak.py --kills 10 --steps 300

First trains a reference run without interruption. Then trains the same configuration again,
killing it with ``kill -9`` at a random moment of its lifetime and resuming it with
``train.resume=true`` until it finishes, ``--kills`` times in all. The final weights must equal
the reference's bit for bit (CPU, same seed); the script prints each kill and exits 1 when
they differ. Arguments after ``--`` are Hydra overrides for both runs (the default model is
small so a soak takes minutes; drop the overrides to soak the default model).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent

from seq2seq.training.checkpoint import load_checkpoint  # noqa: E402

SMALL = [
    "model.embedding_size=64",
    "model.encoder_size=64",
    "model.decoder_size=128",
    "attention.size=64",
    "train.valid_max_sentences=100",
    "train.valid_every=50",
    "train.checkpoint_every=25",
    "train.log_every=25",
]


def command(out: Path, steps: int, overrides: list[str], resume: bool) -> list[str]:
    args = [sys.executable, str(REPO / "train.py"), *overrides, f"train.max_steps={steps}", f"hydra.run.dir={out}"]
    return args + (["train.resume=true"] if resume else [])


def step_of(out: Path) -> int | None:
    path = out / "last.pt"
    return load_checkpoint(path)["progress"]["step"] if path.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run")
    parser.add_argument("--kills", type=int, default=8, help="how many times to kill the second run")
    parser.add_argument("--seed", type=int, default=0, help="seed for the kill times")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "soak", help="where both runs go")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (after --); default: a small model")
    args = parser.parse_args()
    overrides = args.overrides or SMALL
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty; remove it or pass --out")
    rng = random.Random(args.seed)
    reference, killed = args.out / "reference", args.out / "killed"

    start = time.monotonic()
    subprocess.run(command(reference, args.steps, overrides, resume=False), check=True, stdout=subprocess.DEVNULL)
    duration = time.monotonic() - start
    print(f"reference: {args.steps} steps in {duration:.0f}s", flush=True)

    kills = 0
    while True:
        resume = step_of(killed) is not None
        proc = subprocess.Popen(
            command(killed, args.steps, overrides, resume), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if kills < args.kills:
            delay = rng.uniform(0.1, duration)  # anywhere in a run's life: start-up, steps, writes, validation
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                print(f"kill {kills}: after {delay:.1f}s, last.pt at step {step_of(killed)}", flush=True)
                continue
        if proc.wait() != 0:
            print(f"the run failed on its own (exit {proc.returncode}); see {killed / 'train.log'}", file=sys.stderr)
            return 1
        break  # it ran to its end: max_steps, or early stopping like the reference
    want, got = load_checkpoint(reference / "last.pt")["model"], load_checkpoint(killed / "last.pt")["model"]
    differing = [k for k in want if not torch.equal(want[k], got[k])]
    if differing:
        print(f"FAIL: after {kills} kills, {len(differing)} tensors differ from the reference: {differing[:5]}")
        return 1
    print(f"OK: killed {kills} times, resumed each time; final weights equal the reference bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
