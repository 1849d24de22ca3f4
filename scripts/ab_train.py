"""Interleaved A/B of training speed: this checkout against an earlier revision, on this host now.

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/ab_train.py --rev b5b303b [--rounds 5] [-- overrides]
    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/ab_train.py --rev 4a2ec02^ --loop    # make bench-ab REF=...

Both sides run ``make bench``'s measurement (``scripts/bench.py --child``: the peer model, target
tokens per second of the product's own training step, median of timed windows after a warm-up),
each in a fresh process, alternating A B, B A, ... so that a drift of the host's speed falls on
both sides alike. A is the revision (checked out with ``git worktree`` into a temporary folder and
imported from there), B this working tree. Prints each side's median over rounds and B / A per
precision; a speed claim needs a ratio measured this way, not figures from different hours.

``--loop`` measures the whole training loop instead of the step: each side runs ``python train.py``
(the default model unless overrides say otherwise, ``train.max_steps=LOOP_STEPS``, validation only
at the end), so its batches are read as the loop reads them (in this checkout, from the
memory-mapped corpus cache); a run's figure is the median of the tok/s its train.log reports after
the first two windows (kernels built, caches warm).
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
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from bench import PEER, PEER_BATCH_TOKENS, TRANSFORMER  # noqa: E402

RATE = re.compile(r"\| ([\d,]+) tok/s \|")
WARM_WINDOWS = 2  # a --loop run's first windows build kernels and warm caches: left out


def tree_env(tree: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the tree's own seq2seq, not the installed one
    if env.get("SEQ2SEQ_DATA_DIR"):  # the children run in the trees: a relative corpus path must not move
        env["SEQ2SEQ_DATA_DIR"] = str(Path(env["SEQ2SEQ_DATA_DIR"]).resolve())
    return env


def tokens_per_second(tree: Path, overrides: list[str], windows: int, steps: int) -> float:
    command = [sys.executable, str(tree / "scripts" / "bench.py"), "--child", json.dumps(overrides)]
    command += ["--windows", str(windows), "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tree, env=tree_env(tree))
    if done.returncode != 0:
        sys.exit(f"error: measuring in {tree} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["tgt_tok_per_s"])


def window_rates(log: str) -> list[float]:
    """The tok/s of every window a train.log reports, in order."""
    return [float(m.group(1).replace(",", "")) for m in RATE.finditer(log)]


def loop_figure(log: str) -> float:
    """A --loop run's figure: the median of its windows after the first ``WARM_WINDOWS``."""
    rates = window_rates(log)
    if len(rates) <= WARM_WINDOWS:
        sys.exit(f"error: a run logged {len(rates)} tok/s windows; give more --loop-steps")
    return statistics.median(rates[WARM_WINDOWS:])


def loop_tokens_per_second(tree: Path, overrides: list[str], steps: int, run_dir: Path) -> float:
    """``python train.py`` in ``tree`` for ``steps`` updates: the median of its logged windows."""
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "train.py", *overrides, f"train.max_steps={steps}", f"train.valid_every={steps}"]
    command.append(f"hydra.run.dir={run_dir}")
    done = subprocess.run(command, capture_output=True, text=True, cwd=tree, env=tree_env(tree))
    if done.returncode != 0:
        sys.exit(f"error: training in {tree} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    figure = loop_figure((run_dir / "train.log").read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    return figure


def order(round_: int) -> tuple[str, str]:
    """A B in even rounds, B A in odd ones: each side first in half the rounds."""
    return ("A", "B") if round_ % 2 == 0 else ("B", "A")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", required=True, help="the A side: a git revision of this repository")
    parser.add_argument("--rounds", type=int, default=5, help="A/B pairs per precision")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per measurement")
    parser.add_argument("--steps", type=int, default=12, help="training steps per window")
    parser.add_argument("--loop", action="store_true", help="the whole training loop (python train.py), not the step")
    parser.add_argument("--loop-steps", type=int, default=400, help="--loop: updates per run")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides on the peer model (default attention=bahdanau); --loop: on the default",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.loop and args.loop_steps < 50 * (WARM_WINDOWS + 2):
        parser.error(f"--loop-steps {args.loop_steps}: at least {50 * (WARM_WINDOWS + 2)} (windows of 50 updates)")
    precisions = [p for p in args.precisions.split(",") if p]
    if not precisions or any(p not in ("fp32", "bf16") for p in precisions):
        parser.error(f"--precisions {args.precisions!r}: choose from fp32, bf16")
    model = args.overrides or ([] if args.loop else ["attention=bahdanau"])
    with tempfile.TemporaryDirectory(prefix="seq2seq-ab-") as folder:
        tree = Path(folder) / "a"
        added = subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.rev], cwd=REPO, capture_output=True, text=True
        )
        if added.returncode != 0:
            parser.error(f"--rev {args.rev}: {added.stderr.strip().splitlines()[-1]}")
        try:
            results = {}
            for precision in precisions:
                base = TRANSFORMER if "model=transformer" in model else PEER  # bench's rows: the peers' sizes
                peer = [] if args.loop else [*base, f"train.batch_tokens={PEER_BATCH_TOKENS}"]
                overrides = [*peer, *model, f"train.precision={precision}"]
                sides: dict[str, list[float]] = {"A": [], "B": []}
                for k in range(args.rounds):
                    for side in order(k):
                        where = tree if side == "A" else REPO
                        if args.loop:
                            run_dir = Path(folder) / f"run-{side}"
                            sides[side].append(loop_tokens_per_second(where, overrides, args.loop_steps, run_dir))
                        else:
                            sides[side].append(tokens_per_second(where, overrides, args.windows, args.steps))
                    print(
                        f"{precision} round {k + 1}: A {sides['A'][-1]:,.0f}  B {sides['B'][-1]:,.0f} tok/s", flush=True
                    )
                a, b = statistics.median(sides["A"]), statistics.median(sides["B"])
                results[precision] = {"A": sides["A"], "B": sides["B"], "median_A": a, "median_B": b, "B/A": b / a}
                print(f"{precision}: median A ({args.rev}) {a:,.0f}, B (this tree) {b:,.0f} tok/s, B/A {b / a:.3f}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    print(json.dumps({"rev": args.rev, "loop": args.loop, "overrides": model, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
