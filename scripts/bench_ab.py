"""``make bench-ab REF=<commit>``: this checkout's training speed against another commit's, interleaved.

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/bench_ab.py --ref 2550aab [--rounds 3] [--steps 400] [OVERRIDES]

Both sides run ``python train.py`` with the same overrides (default: the default Bahdanau model on
Multi30k), ``train.max_steps=STEPS`` and validation only at the end, each from its own checkout
(the other commit in a git worktree under ``outputs/bench-ab/``), one after the other in the order
A B B A A B ...: a change in the host's speed during the comparison falls on both sides alike.
Each run's figure is the median of the tok/s its train.log reports (every ``train.log_every``
updates), without the first two windows (kernels built, caches warm); a side's figure is the median
of its runs. It prints both and their ratio and writes ``outputs/bench_ab.json``.

Everything a run does before its first update (reading the corpus, preparing its cache) is
outside the windows, so the comparison is of the training loop: the model, the batches as the
loop reads them (for this checkout: from the memory-mapped corpus cache) and the optimiser.
Nothing else may run on the host meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "outputs" / "bench-ab"
RATE = re.compile(r"\| ([\d,]+) tok/s \|")
WARM_WINDOWS = 2


def order(rounds: int) -> list[str]:
    """``A B B A A B ...``: each side first in half the rounds."""
    return [side for r in range(rounds) for side in (("A", "B") if r % 2 == 0 else ("B", "A"))]


def window_rates(log: str) -> list[float]:
    """The tok/s of every logged window of a train.log, in order."""
    return [float(m.group(1).replace(",", "")) for m in RATE.finditer(log)]


def run_figure(log: str) -> float:
    """One run's figure: the median of its windows after the first ``WARM_WINDOWS``."""
    rates = window_rates(log)
    if len(rates) <= WARM_WINDOWS:
        raise SystemExit(f"error: a run logged {len(rates)} tok/s windows; give more --steps")
    return statistics.median(rates[WARM_WINDOWS:])


def git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def checkout(ref: str) -> tuple[Path, str]:
    """A worktree of ``ref`` under outputs/bench-ab (made once) and its commit."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = OUT / commit[:12]
    if not (tree / "train.py").exists():
        shutil.rmtree(tree, ignore_errors=True)
        git("worktree", "add", "--detach", "--force", str(tree), commit)
    return tree, commit


def train(tree: Path, overrides: list[str], steps: int, run_dir: Path) -> float:
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "train.py", *overrides, f"train.max_steps={steps}", f"train.valid_every={steps}"]
    command.append(f"hydra.run.dir={run_dir}")
    env = {**os.environ, "PYTHONPATH": str(tree)}  # that checkout's package, not the installed one
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: training in {tree} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    figure = run_figure((run_dir / "train.log").read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    return figure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the commit to compare with (A); this checkout is B")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side")
    parser.add_argument("--steps", type=int, default=400, help="updates per run (train.max_steps)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sides")
    args = parser.parse_args()
    if args.steps < 50 * (WARM_WINDOWS + 2):
        parser.error(f"--steps {args.steps}: at least {50 * (WARM_WINDOWS + 2)} (windows of 50 updates)")
    tree, commit = checkout(args.ref)
    sides = {"A": tree, "B": REPO}
    names = {"A": commit[:12], "B": f"{git('rev-parse', 'HEAD')[:12]} (this checkout)"}
    figures: dict[str, list[float]] = {"A": [], "B": []}
    for i, side in enumerate(order(args.rounds)):
        figure = train(sides[side], args.overrides, args.steps, OUT / "runs" / f"{side}-{i}")
        figures[side].append(figure)
        print(f"run {i + 1}/{2 * args.rounds}: {side} {names[side]}: {figure:,.0f} tok/s", flush=True)
    medians = {side: statistics.median(rates) for side, rates in figures.items()}
    report = {
        "overrides": args.overrides,
        "steps": args.steps,
        "sides": {side: {"commit": names[side], "runs": figures[side], "median": medians[side]} for side in "AB"},
        "ratio_b_over_a": medians["B"] / medians["A"],
    }
    (REPO / "outputs").mkdir(exist_ok=True)
    (REPO / "outputs" / "bench_ab.json").write_text(json.dumps(report, indent=2) + "\n")
    for side in "AB":
        runs = " ".join(f"{r:,.0f}" for r in figures[side])
        print(f"{side} {names[side]}: median {medians[side]:,.0f} tok/s ({runs})")
    print(f"B/A: {report['ratio_b_over_a']:.3f}   (outputs/bench_ab.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
