"""Data preparation at scale (issue 37): cold and warm start to the first update, and the trainer's memory.

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/bench_data.py 1000000 4500000 [--work DIR] [--steps 50]

For each size, a corpus of that many pairs from :mod:`make_corpus` (made once in ``--work``), then:

- **cold**: a fresh cache folder (no corpus cache, no SentencePiece model): seconds from the
  command to the first update, the training process's peak and steady anonymous memory;
- **warm**: the same again with the cache left by the cold start;
- **2 ranks**: ``torchrun --nproc_per_node=2`` on the warm cache: each rank's anonymous memory and
  the sum of the ranks' PSS beside one process's PSS (Multi30k too: what a second rank costs when
  there is almost no corpus to share).

Memory is ``RssAnon`` of /proc/PID/status (the process's own pages; mapped corpus pages are the
page cache's, shared and reclaimable) sampled every 20 ms for the peak, and, for several
processes, the sum of their ``Pss`` (/proc/PID/smaps_rollup: shared pages split between them).
Multi30k is measured the same way first, as the reference. Run it on a quiet machine: other
jobs on the cores change every time here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = ["train.valid_every=100000", "train.checkpoint_every=100000", "train.valid_max_sentences=16"]


def _status(field: str, path: str = "/proc/self/status") -> float:
    """A ``kB`` field of /proc/self/status or smaps_rollup, in MB."""
    with open(path) as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def probe(overrides: list[str], steps: int, started: float) -> None:
    """In the training process: time to the first update, then memory after ``steps`` updates (one JSON line)."""
    peak = [0.0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], _status("RssAnon"))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    from seq2seq.overrides import compose
    from seq2seq.training import run
    from seq2seq.training.trainer import Trainer

    figures: dict[str, float] = {"rank": int(os.environ.get("RANK", "0"))}
    after_step = Trainer._after_step

    def timed(self, *args):
        if "first_update_s" not in figures:
            figures["first_update_s"] = time.time() - started
        if self.progress.step == steps:
            peak[0] = max(peak[0], _status("RssAnon"))
            figures.update(
                rss_anon_mb=_status("RssAnon"),
                peak_anon_mb=peak[0],
                pss_mb=_status("Pss", "/proc/self/smaps_rollup"),
                rss_mb=_status("VmRSS"),
            )
            # one file a rank: two ranks printing at once would interleave their lines in one pipe
            out = Path(os.environ["BENCH_OUT"]).parent / f"figures-{os.getpid()}.json"
            out.write_text(json.dumps(figures))
        return after_step(self, *args)

    Trainer._after_step = timed
    run.train(compose([*overrides, *BASE, f"train.max_steps={steps}"]), Path(os.environ["BENCH_OUT"]))


def measure(overrides: list[str], cache: Path, work: Path, steps: int, ranks: int = 1) -> list[dict]:
    """Start a training process (or ``ranks`` under torchrun) and collect each rank's figures."""
    out = work / "runs" / f"{time.time():.0f}-{os.getpid()}"
    env = {**os.environ, "SEQ2SEQ_CACHE_DIR": str(cache), "BENCH_OUT": str(out), "PYTHONPATH": str(REPO)}
    args = [__file__, "--probe", json.dumps(overrides), "--steps", str(steps), "--started", str(time.time())]
    if ranks > 1:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", *args]
    else:
        command = [sys.executable, *args]
    for old in out.parent.glob("figures-*.json"):
        old.unlink()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the measured run failed:\n{done.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    figures = [json.loads(path.read_text()) for path in out.parent.glob("figures-*.json")]
    return sorted(figures, key=lambda f: f["rank"])


def row(name: str, figures: list[dict]) -> str:
    first = max(f["first_update_s"] for f in figures)
    anon = " + ".join(f"{f['rss_anon_mb']:.0f}" for f in figures)
    peak = max(f["peak_anon_mb"] for f in figures)
    pss = sum(f["pss_mb"] for f in figures)
    return f"| {name} | {first:.1f} | {anon} | {peak:.0f} | {pss:.0f} |"


def one_thread(overrides: list[str]) -> list[str]:
    """``overrides`` with one thread a process (the rows that compare one rank with two)."""
    return [o for o in overrides if not o.startswith("train.threads")] + ["train.threads=1"]


def bench(sizes: list[int], work: Path, steps: int, threads: int) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from make_corpus import make_corpus

    corpora = Path(os.environ.get("SEQ2SEQ_DATA_DIR", REPO.parent / "shared" / "corpora"))
    one = [f"train.threads={threads}"]
    print("| run | s to the first update | RssAnon MB (per rank) | peak RssAnon MB | PSS MB (sum) |")
    print("|---|---|---|---|---|")
    cache = work / "cache-multi30k"
    shutil.rmtree(cache, ignore_errors=True)
    multi30k = [f"data.root={corpora}", *one]
    print(row("Multi30k cold", measure(multi30k, cache, work, steps)), flush=True)
    print(row("Multi30k warm", measure(multi30k, cache, work, steps)), flush=True)
    two = one_thread(multi30k)
    print(row("Multi30k warm, 1 rank, 1 thread", measure(two, cache, work, steps)), flush=True)
    print(row("Multi30k warm, 2 ranks (torchrun)", measure(two, cache, work, steps, ranks=2)), flush=True)
    for size in sizes:
        folder = work / f"pairs-{size}"
        if not (folder / "pairs.train.tsv").is_file():
            make_corpus(size, folder, corpora)
        tsv = ["data=tsv", "data.src=de", "data.tgt=en", f"data.files={folder}/pairs.*.tsv", *one]
        cache = work / f"cache-{size}"
        shutil.rmtree(cache, ignore_errors=True)
        print(row(f"{size:,} pairs cold", measure(tsv, cache, work, steps)), flush=True)
        print(row(f"{size:,} pairs warm", measure(tsv, cache, work, steps)), flush=True)
        two = one_thread(tsv)
        print(row(f"{size:,} pairs warm, 1 rank, 1 thread", measure(two, cache, work, steps)), flush=True)
        print(row(f"{size:,} pairs warm, 2 ranks (torchrun)", measure(two, cache, work, steps, ranks=2)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="*", default=[1_000_000, 4_500_000])
    parser.add_argument("--multi30k-only", action="store_true", help="only the Multi30k rows (no generated corpus)")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench_data")
    parser.add_argument("--steps", type=int, default=50, help="updates before the steady memory is read")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe is not None:
        probe(json.loads(args.probe), args.steps, args.started)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    bench([] if args.multi30k_only else args.sizes, args.work, args.steps, args.threads)


if __name__ == "__main__":
    main()
