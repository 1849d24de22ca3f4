"""``make profile``: where one training step of bench's peer model spends its time, op by op.

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/profile_step.py [--variant bahdanau] [--precision fp32]

Builds the peer model of ``make bench`` (the model compared with OpenNMT-py) for one variant,
warms it up on one batch of each batch shape (as after a first epoch), then runs ``--steps``
training steps under ``torch.profiler`` and prints the operators by self CPU time, with their
share of the profiled wall time and their call counts; the same table goes to
``outputs/profile/<variant>-<precision>.txt``. Profile on an otherwise idle machine: the shares
are of wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import PEER_BATCH_TOKENS, VARIANTS

from seq2seq.errors import Seq2SeqError

REPO = Path(__file__).resolve().parent.parent


def profile(variant: str, precision: str, steps: int, rows: int) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from seq2seq.data.batching import collate, epoch_batches
    from seq2seq.overrides import compose
    from seq2seq.training import Trainer

    overrides = [*VARIANTS[variant], f"train.precision={precision}", f"train.batch_tokens={PEER_BATCH_TOKENS}"]
    config = compose([*overrides, "train.device=cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp))
        data, multiple = trainer.train_data, config.train.pad_to_multiple
        src_lens, tgt_lens = [len(s) for s in data.src_ids], [len(t) for t in data.tgt_ids]
        batches = epoch_batches(src_lens, tgt_lens, config.train.batch_tokens, config.train.seed, 0, multiple)
        batch = [collate([data.src_ids[j] for j in i], [data.tgt_ids[j] for j in i], multiple) for i in batches]
        for b in batch[:48]:  # warm-up: oneDNN builds its kernels
            trainer.train_step(b, 1.0 / b.n_tokens)
        tokens, start = 0, time.perf_counter()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batch[48 : 48 + steps]:
                trainer.train_step(b, 1.0 / b.n_tokens)
                tokens += b.n_tokens
        wall = time.perf_counter() - start
        trainer.tracker.close()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    lines = [
        f"{variant}, {precision}: {steps} steps, {tokens:,} target tokens in {wall:.2f} s under the profiler "
        f"({tokens / wall:,.0f} tok/s; the profiler's own cost included)",
        f"{'operator':<48} {'self ms':>9} {'share':>6} {'calls':>8}",
    ]
    for e in events[:rows]:
        share = e.self_cpu_time_total / 1e6 / wall
        lines.append(f"{e.key[:48]:<48} {e.self_cpu_time_total / 1e3:9.1f} {share:6.1%} {e.count:8d}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="bahdanau", choices=list(VARIANTS))
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=20, help="profiled training steps (after the warm-up)")
    parser.add_argument("--rows", type=int, default=25, help="operators to list")
    args = parser.parse_args()
    if args.steps < 1 or args.rows < 1:
        parser.error("--steps and --rows must be at least 1")
    try:
        table = profile(args.variant, args.precision, args.steps, args.rows)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = REPO / "outputs" / "profile" / f"{args.variant}-{args.precision}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table + f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
