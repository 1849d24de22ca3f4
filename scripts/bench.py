"""``make bench``: training and decoding throughput, memory and MFU, written to outputs/bench.json.

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/bench.py [--ckpt RUN/best.pt]

Training is measured on the model compared with OpenNMT-py (make peers) (embeddings 256, encoder
2x128 bidirectional, decoder 256, dropout 0.2, Adam, joint SentencePiece BPE 8k cut into
per-side vocabularies, about 1,000 target tokens per batch) for the variants ``none``, ``luong``
(no input feeding: parallel over target positions), ``luong_input_feed``, ``bahdanau``, and
``bahdanau_4heads`` / ``luong_4heads`` (``attention.heads=4``, the latter on the fast path), and the
``transformer`` at its default sizes (d 256, 3 + 3 layers, 4 heads: make peers trains OpenNMT-py's
at the same sizes), in float32 and bfloat16 autocast, each in a fresh process (so its peak RSS is its own). The default
model is measured beside it. Throughput is target tokens (EOS included, padding excluded) per
second of the product's own training step (collate, forward, loss, backward, clip, Adam), the
median of several timed windows after a warm-up.

FLOPs per target token are counted on real batches: matrix multiplies by
``torch.utils.flop_counter`` over a forward and backward pass, plus the fused ``nn.LSTM`` layers
the counter cannot see, counted as 3 x 2 x 4H(I + H) per token, layer and direction (forward
plus a backward of twice the forward). Element-wise work is not counted. MFU is the achieved
FLOP/s over the rate of a large matrix multiply of the same precision, measured in the same
process. Decoding speed (greedy and beam 5 on test_2016_flickr, float32 and bf16 autocast)
needs trained checkpoints: ``--ckpt`` and ``--transformer-ckpt``, or the script first trains the peer
Bahdanau model and the Transformer for ``--train-minutes`` each.

When ``outputs/peers/opennmt.json`` exists (``make peers``), the script ends with the ratios to
it, float32 against OpenNMT-py's float32 and bf16 against the same, and says how long before
the peers were measured: this host's speed drifts, so only a pair measured back to back is a
comparison.

The measurement in the fresh process lives in ``bench_train.py``, the comparison with ``make peers`` in
``bench_peers.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_peers import figure, print_peer_ratios
from bench_train import child, matmul_gflops

REPO = Path(__file__).resolve().parent.parent

PEER = [
    "model.embedding_size=256",
    "model.encoder_size=128",
    "model.encoder_layers=2",
    "model.decoder_size=256",
    "model.dropout=0.2",
    "attention.size=256",
    "data.vocab.size=8000",
]
PEER_BATCH_TOKENS = 1100  # padded tokens of the longer side: ~1,000 target tokens per batch, as the peers
# the Transformer at its default sizes (d 256, 3 + 3 layers, 4 heads, feed-forward 1024), as make peers trains it
TRANSFORMER = ["model=transformer", "data.vocab.size=8000"]
VARIANTS = {  # every row's overrides
    "none": [*PEER, "attention=none"],
    "luong": [*PEER, "attention=luong", "attention.input_feeding=false"],
    "luong_input_feed": [*PEER, "attention=luong"],
    "bahdanau": [*PEER, "attention=bahdanau"],
    "bahdanau_4heads": [*PEER, "attention=bahdanau", "attention.heads=4"],  # multi-head: the step loop, not fused
    "luong_4heads": [*PEER, "attention=luong", "attention.input_feeding=false", "attention.heads=4"],  # fast path
    "transformer": TRANSFORMER,
}


def measure(overrides: list[str], args) -> dict:
    """Run ``bench.py --child`` on ``overrides`` in a fresh process; returns its figures (its last line, JSON)."""
    command = [sys.executable, __file__, "--child", json.dumps(overrides)]
    command += ["--windows", str(args.windows), "--steps", str(args.steps)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"error: measuring {' '.join(overrides)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cpu_extensions() -> list[str]:
    """The CPU's AVX-512 and AMX flags (empty on a CPU without them, or where /proc/cpuinfo is missing)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma")))


def decode_figures(ckpt: Path, device: str, precisions: tuple[str, ...] = ("fp32", "bf16")) -> dict:
    """Greedy and beam 5 decoding speed of ``ckpt`` on its test split, in each of ``precisions``."""
    from seq2seq.data.corpora import load_split
    from seq2seq.search import Search, decode_corpus
    from seq2seq.translator import Translator

    translator = Translator.from_checkpoint(ckpt, device)
    config = translator.config
    split = "test_2016_flickr" if "multi30k" in config.data.name else config.data.test[0]
    src_ids = translator.vocab.encode_src(list(load_split(config.data, split)["src"]))
    figures = {"checkpoint": str(ckpt), "split": split, "n_sentences": len(src_ids)}
    for name, beam, batch_size in (("greedy", 1, 128), ("beam5", 5, 64)):
        for precision in precisions:
            suffix = "" if precision == "fp32" else "_bf16"
            times = []
            for _ in range(3):
                start = time.perf_counter()
                search = Search(beam=beam, batch_size=batch_size, precision=precision)
                hyps = decode_corpus(translator.model, src_ids, translator.device, search)
                times.append(time.perf_counter() - start)
            figures[f"{name}_sent_per_s{suffix}"] = len(src_ids) / statistics.median(times)
            if beam == 1:
                figures[f"mean_output_len{suffix}"] = sum(len(h.tokens) + 1 for h in hyps) / len(hyps)
    return figures


def train_checkpoint(minutes: float, device: str, variant: str = "bahdanau") -> Path:
    """Train the peer ``variant`` for a few minutes on ``device`` (reused by later runs of bench)."""
    name = "bench-model" if variant == "bahdanau" else f"bench-{variant}"
    out = REPO / "outputs" / (name if device == "cpu" else f"{name}-{device.replace(':', '')}")
    if (out / "best.pt").exists():
        print(f"decode checkpoint: reusing {out / 'best.pt'} (delete it to retrain)", flush=True)
        return out / "best.pt"
    print(f"decode checkpoint: training the peer {variant} model for {minutes:g} minutes ...", flush=True)
    command = [sys.executable, "train.py", f"train.batch_tokens={PEER_BATCH_TOKENS}", *VARIANTS[variant]]
    command += [f"train.max_time={minutes * 60:g}", f"train.device={device}", f"hydra.run.dir={out}"]
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return out / "best.pt"


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--child`` is the hidden entry of one measurement in a fresh process)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, help="a trained checkpoint for the decoding figures")
    parser.add_argument(
        "--transformer-ckpt", type=Path, help="a trained Transformer checkpoint for its decoding figures"
    )
    parser.add_argument("--train-minutes", type=float, default=3.0, help="without --ckpt: train this long first")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per configuration")
    parser.add_argument("--steps", type=int, default=12, help="training steps per window")
    parser.add_argument("--device", default="cpu", help="cpu (the default), cuda or cuda:N")
    parser.add_argument(
        "--batch-tokens",
        type=int,
        help=f"the peer rows' train.batch_tokens (default {PEER_BATCH_TOKENS}, as the peers)",
    )
    parser.add_argument(
        "--rows",
        help="comma-separated training rows to measure (default: all; e.g. transformer: its training and "
        "decoding alone, for a ratio to `peer_opennmt.py --only transformer` measured just before)",
    )
    parser.add_argument("--out", type=Path, help="default: outputs/bench.json (bench-cuda.json on a GPU)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def chosen_rows(parser: argparse.ArgumentParser, args) -> list[str]:
    """The training rows ``--rows`` names (default: all); an unknown one is a usage error."""
    rows = [*VARIANTS, "default_bahdanau"] if args.rows is None else [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in (*VARIANTS, "default_bahdanau")]
    if unknown or not rows:
        parser.error(f"--rows {args.rows}: choose from {', '.join([*VARIANTS, 'default_bahdanau'])}")
    return rows


def setup(parser: argparse.ArgumentParser, args, rows: list[str]) -> tuple:
    """Check the inputs and pick the device: ``(device, bf16, machine name, output path, peer batch tokens)``."""
    if not os.environ.get("SEQ2SEQ_DATA_DIR"):
        print("note: SEQ2SEQ_DATA_DIR is not set, so the corpus comes from the Hugging Face hub", flush=True)
    for flag, path in (("--ckpt", args.ckpt), ("--transformer-ckpt", args.transformer_ckpt)):
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path} does not exist")
    from seq2seq.errors import Seq2SeqError
    from seq2seq.hardware import bf16_lstm_runs, describe_device, pick_device

    try:
        device = pick_device(args.device)
    except Seq2SeqError as error:
        parser.error(str(error))
    bf16 = bf16_lstm_runs(device)
    machine_name = describe_device(device)
    name = "bench" if args.rows is None else "bench-" + "-".join(rows)
    out = args.out or REPO / "outputs" / (
        f"{name}.json" if device.type == "cpu" else f"{name}-{args.device.replace(':', '')}.json"
    )
    batch_tokens = PEER_BATCH_TOKENS if args.batch_tokens is None else args.batch_tokens
    if batch_tokens < 1:
        parser.error("--batch-tokens must be at least 1")
    return device, bf16, machine_name, out, batch_tokens


def header(device, bf16: bool, machine_name: str, batch_tokens: int) -> dict:
    """The report's machine and matrix-multiply ceilings, printed with the training table's header."""
    import torch

    from seq2seq.hardware import describe_device

    machine = {
        "name": machine_name,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_vector_extensions": cpu_extensions(),
    }
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    report = {
        "machine": {**machine, "device": str(device)},
        "peer_batch_tokens": batch_tokens,
        # bf16 only where the device runs bf16 LSTMs (elsewhere its matrix multiplies are emulated: minutes)
        "bf16": "supported" if bf16 else f"unsupported on {describe_device(device)}",
        "matmul_gflops": {
            "fp32": matmul_gflops(torch.float32, device),
            "bf16": matmul_gflops(torch.bfloat16, device) if bf16 else None,
        },
        "train": {},
    }
    gflops = report["matmul_gflops"]
    print(f"{device}: matmul GFLOP/s fp32 {gflops['fp32']:,.0f}, bf16 {figure(gflops['bf16'])}", flush=True)
    if not bf16:
        print(f"bf16: {report['bf16']}; measuring float32 only", flush=True)
    print(
        f"{'variant':<18} {'fp32 tok/s':>10} {'bf16 tok/s':>10} {'MFU fp32':>8} {'MFU bf16':>8} {'peak RSS MB fp32 / bf16':>24}"
        + ("   peak GPU MB fp32 / bf16" if device.type == "cuda" else ""),
        flush=True,
    )
    return report


def train_row(fp32: dict, half: dict) -> dict:
    """One training row of the report from its float32 and bf16 figures (``half`` is empty without bf16)."""
    row = {
        "tgt_tok_per_s": fp32["tgt_tok_per_s"],
        "tgt_tok_per_s_bf16": half.get("tgt_tok_per_s"),
        "mfu": fp32["mfu"],
        "mfu_bf16": half.get("mfu"),
        "peak_rss_mb": fp32["peak_rss_mb"],
        "peak_rss_mb_bf16": half.get("peak_rss_mb"),
        "flops_per_tgt_token": fp32["flops_per_tgt_token"],
        "mean_tgt_tokens_per_batch": fp32["mean_tgt_tokens_per_batch"],
        "windows": {"fp32": fp32["windows"], "bf16": half.get("windows")},
    }
    if "peak_gpu_mb" in fp32:
        row["peak_gpu_mb"], row["peak_gpu_mb_bf16"] = fp32["peak_gpu_mb"], half.get("peak_gpu_mb")
    return row


def print_train_row(name: str, row: dict) -> None:
    """Print one training row of the table."""
    print(
        f"{name:<18} {row['tgt_tok_per_s']:>10,.0f} {figure(row['tgt_tok_per_s_bf16']):>10} "
        f"{row['mfu']:>8.1%} {figure(row['mfu_bf16'], '.1%'):>8} "
        f"{row['peak_rss_mb']:>15,.0f} / {figure(row['peak_rss_mb_bf16']):>6}"
        + (f"   {row['peak_gpu_mb']:>13,.0f} / {figure(row['peak_gpu_mb_bf16']):>6}" if "peak_gpu_mb" in row else ""),
        flush=True,
    )


def train_rows(report: dict, rows: list[str], args, bf16: bool, batch_tokens: int) -> None:
    """Measure the training ``rows`` in float32 and (where it runs) bf16, each in a fresh process; add and print."""
    for name, overrides in [*VARIANTS.items(), ("default_bahdanau", None)]:
        if name not in rows:
            continue
        base = [f"train.batch_tokens={batch_tokens}", *overrides] if overrides else ["attention=bahdanau"]
        base.append(f"train.device={args.device}")
        fp32 = measure([*base, "train.precision=fp32"], args)
        half = measure([*base, "train.precision=bf16"], args) if bf16 else {}
        row = train_row(fp32, half)
        (report["train"] if overrides else report.setdefault("default_model", {}))[name] = row
        print_train_row(name, row)


def decode_rows(report: dict, rows: list[str], args, bf16: bool) -> None:
    """Decoding speed of the rows' checkpoints (given, or trained first); add and print it."""
    checkpoints = {}
    if any(r != "transformer" for r in rows):  # the LSTM rows: the peer Bahdanau model's decoding
        checkpoints["decode"] = args.ckpt or train_checkpoint(args.train_minutes, args.device)
    if "transformer" in rows:
        transformer = args.transformer_ckpt or train_checkpoint(args.train_minutes, args.device, "transformer")
        checkpoints["decode_transformer"] = transformer
    for key, ckpt in checkpoints.items():
        report[key] = d = decode_figures(ckpt, args.device, ("fp32", "bf16") if bf16 else ("fp32",))
        print(
            f"{key} {d['split']} ({d['n_sentences']} sentences), sent/s fp32 / bf16: "
            f"greedy {d['greedy_sent_per_s']:,.0f} / {figure(d.get('greedy_sent_per_s_bf16'))}, "
            f"beam 5 {d['beam5_sent_per_s']:,.0f} / {figure(d.get('beam5_sent_per_s_bf16'))}; "
            f"mean output {d['mean_output_len']:.1f} / {figure(d.get('mean_output_len_bf16'), '.1f')} tokens"
        )


def write_report(report: dict, out: Path, started: float, device) -> None:
    """Add the ratios to the peers (on a CPU) and the run's duration, and write ``report`` to ``out``."""
    if device.type == "cpu":  # the peers are measured on this CPU
        print_peer_ratios(report)
    report["seconds"] = time.monotonic() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} in {report['seconds']:.0f}s")


def main() -> int:
    """Measure every row, print the table and write the report; with ``--child``, one measurement as JSON."""
    parser = build_parser()
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.windows, args.steps)))
        return 0
    rows = chosen_rows(parser, args)
    device, bf16, machine_name, out, batch_tokens = setup(parser, args, rows)
    started = time.monotonic()
    report = header(device, bf16, machine_name, batch_tokens)
    train_rows(report, rows, args, bf16, batch_tokens)
    decode_rows(report, rows, args, bf16)
    write_report(report, out, started, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
