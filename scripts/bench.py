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
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "outputs" / "peers" / "opennmt.json"
# (our figure, OpenNMT-py's figure) for each comparison: paths into bench.json and opennmt.json
PEER_PAIRS = {
    "bahdanau / additive, tgt tok/s": (("train", "bahdanau", "tgt_tok_per_s"), ("train", "additive", "tgt_tok_per_s")),
    "luong input feeding / general": (
        ("train", "luong_input_feed", "tgt_tok_per_s"),
        ("train", "general", "tgt_tok_per_s"),
    ),
    "luong fast path / general": (("train", "luong", "tgt_tok_per_s"), ("train", "general", "tgt_tok_per_s")),
    "greedy test2016, sent/s": (("decode", "greedy_sent_per_s"), ("decode", "greedy", "sent_per_s")),
    "beam 5 test2016, sent/s": (("decode", "beam5_sent_per_s"), ("decode", "beam5", "sent_per_s")),
    "transformer, tgt tok/s": (("train", "transformer", "tgt_tok_per_s"), ("train", "transformer", "tgt_tok_per_s")),
    "transformer greedy, sent/s": (
        ("decode_transformer", "greedy_sent_per_s"),
        ("decode", "transformer_greedy", "sent_per_s"),
    ),
}

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
MAX_WARMUP = 150  # training steps before the timed windows: one per batch shape, up to this many
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


def synchronize(device) -> None:
    """Wait for ``device``'s queued work (a GPU runs asynchronously; the CPU needs nothing)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(dtype, device="cpu", repeats: int = 7) -> float:
    """Median GFLOP/s of a square matrix multiply (the device's ceiling for this precision).

    2048 x 2048 on a CPU; 8192 x 8192 on a GPU, which a smaller product leaves partly idle.
    """
    import torch

    size = 8192 if torch.device(device).type == "cuda" else 2048
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    torch.mm(a, b)
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def lstm_train_flops(module, tokens: int) -> float:
    """Training FLOPs (forward + 2x backward) of an nn.LSTM's weights over ``tokens`` real positions."""
    hidden, directions = module.hidden_size, 2 if module.bidirectional else 1
    flops, size_in = 0.0, module.input_size
    for _ in range(module.num_layers):
        flops += 3 * 2 * 4 * hidden * (size_in + hidden) * tokens * directions
        size_in = hidden * directions
    return flops


def lstm_flops_hook(counter: list[float]):
    """Forward hook adding a fused nn.LSTM call's training FLOPs to ``counter``."""
    import torch

    def hook(module, inputs, output):
        x = inputs[0]
        tokens = x.data.size(0) if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x.shape[0] * x.shape[1]
        counter[0] += lstm_train_flops(module, tokens)

    return hook


def child(overrides: list[str], windows: int, steps: int) -> dict:
    """Measure one configuration in this (fresh) process; returns the figures as a dict."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from seq2seq.data.batching import collate, epoch_batches, round_up
    from seq2seq.overrides import compose
    from seq2seq.training.trainer import Trainer

    config = compose(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp))
        device = trainer.device
        data = trainer.train_data
        src_lens = [len(s) for s in data.src_ids]
        tgt_lens = [len(t) for t in data.tgt_ids]
        multiple = config.train.pad_to_multiple
        batches = epoch_batches(src_lens, tgt_lens, config.train.batch_tokens, config.train.seed, 0, multiple)

        def batch_at(i):
            index = batches[i % len(batches)]
            return collate([data.src_ids[j] for j in index], [data.tgt_ids[j] for j in index], multiple)

        # FLOPs per target token, on a few real batches
        lstm = [0.0]
        encoder = getattr(trainer.model.encoder, "rnn", None)  # one call per direction on CPU: counted below
        lstms = [m for m in trainer.model.modules() if isinstance(m, torch.nn.LSTM) and m is not encoder]
        hooks = [m.register_forward_hook(lstm_flops_hook(lstm)) for m in lstms]
        counted, tokens = 0.0, 0
        for i in range(3):
            batch = batch_at(1000 + i).to(device)
            with FlopCounterMode(display=False) as counter:
                logits, _ = trainer.model(batch.src, batch.src_lens, batch.tgt_in)
                torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten()).backward()
            counted += counter.get_total_flops()
            if encoder is not None:
                lstm[0] += lstm_train_flops(encoder, int(batch.src_lens.sum()))  # real source tokens, as packed
            tokens += batch.n_tokens
        for h in hooks:
            h.remove()
        trainer.model.zero_grad(set_to_none=True)
        flops_per_token = (counted + lstm[0]) / tokens

        # warm-up: one batch of each shape the epoch holds (at most MAX_WARMUP), as after a first epoch:
        # oneDNN has built its kernels and the heap has held every size of tensor once
        shapes = {}
        for i, index in enumerate(batches):
            longest = (max(src_lens[j] for j in index) + 1, max(tgt_lens[j] for j in index) + 1)
            shapes.setdefault((len(index), *(round_up(n, multiple) for n in longest)), i)
        for i in list(shapes.values())[:MAX_WARMUP]:
            batch = batch_at(i)
            trainer.train_step(batch, 1.0 / batch.n_tokens)
        rates, step = [], 0
        for _ in range(windows):
            synchronize(device)
            n_tokens, start = 0, time.perf_counter()
            for _ in range(steps):
                batch = batch_at(step)
                trainer.train_step(batch, 1.0 / batch.n_tokens)
                n_tokens += batch.n_tokens
                step += 1
            synchronize(device)
            rates.append(n_tokens / (time.perf_counter() - start))
        trainer.tracker.close()
    precision = config.train.precision
    rate = statistics.median(rates)
    ceiling = matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32, device)
    gpu = {"peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20} if device.type == "cuda" else {}
    return {
        "tgt_tok_per_s": rate,
        "windows": rates,
        "flops_per_tgt_token": flops_per_token,
        "mfu": rate * flops_per_token / (ceiling * 1e9),
        "matmul_gflops": ceiling,
        "mean_tgt_tokens_per_batch": sum(tgt_lens[i] + 1 for b in batches for i in b) / len(batches),
        "batch_shapes": len(shapes),
        "warmup_steps": min(len(shapes), MAX_WARMUP),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        **gpu,
    }


def measure(overrides: list[str], args) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps(overrides)]
    command += ["--windows", str(args.windows), "--steps", str(args.steps)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"error: measuring {' '.join(overrides)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _figure(value: float | None, spec: str = ",.0f") -> str:
    """A figure for the table, or ``n/a`` where the device could not run it (bf16 on a CPU without it)."""
    return "n/a" if value is None else format(value, spec)


def cpu_extensions() -> list[str]:
    """The CPU's AVX-512 and AMX flags (empty on a CPU without them, or where /proc/cpuinfo is missing)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma")))


def decode_figures(ckpt: Path, device: str, precisions: tuple[str, ...] = ("fp32", "bf16")) -> dict:
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


def _lookup(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def peer_ratios(report: dict, peers: dict) -> dict:
    """Ours over OpenNMT-py's float32 for each of :data:`PEER_PAIRS`: ``{name: {"fp32": r, "bf16": r}}``."""
    ratios = {}
    for name, (ours, theirs) in PEER_PAIRS.items():
        peer = _lookup(peers, theirs)
        if not peer:
            continue
        fp32, bf16 = _lookup(report, ours), _lookup(report, (*ours[:-1], ours[-1] + "_bf16"))
        if fp32 is None and bf16 is None:  # a row this run did not measure (--rows)
            continue
        ratios[name] = {
            "opennmt_fp32": peer,
            "fp32": None if fp32 is None else fp32 / peer,
            "bf16": None if bf16 is None else bf16 / peer,
        }
    return ratios


def print_peer_ratios(report: dict) -> None:
    """Add and print the ratios to ``make peers``' figures, when there are any."""
    if not PEERS.is_file():
        print("no outputs/peers/opennmt.json: run make peers just before for the ratios to OpenNMT-py")
        return
    try:
        peers = json.loads(PEERS.read_text())
    except json.JSONDecodeError as error:
        print(f"{PEERS} is not JSON ({error}); run make peers again for the ratios to OpenNMT-py")
        return
    age = (time.time() - PEERS.stat().st_mtime) / 60
    ratios = peer_ratios(report, peers)
    report["against_opennmt"] = {"peers_measured_minutes_before": round(age), "ratios": ratios}
    print(f"against OpenNMT-py 3.5.1 float32 ({PEERS.relative_to(REPO)}, written {age:,.0f} minutes before):")
    for name, r in ratios.items():
        print(
            f"  {name:<32} OpenNMT-py {r['opennmt_fp32']:>7,.0f}   ours fp32 {_figure(r['fp32'], '.2f')}x"
            f"   bf16 {_figure(r['bf16'], '.2f')}x"
        )


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


def main() -> int:
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
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.windows, args.steps)))
        return 0
    rows = [*VARIANTS, "default_bahdanau"] if args.rows is None else [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in (*VARIANTS, "default_bahdanau")]
    if unknown or not rows:
        parser.error(f"--rows {args.rows}: choose from {', '.join([*VARIANTS, 'default_bahdanau'])}")
    if not os.environ.get("SEQ2SEQ_DATA_DIR"):
        print("note: SEQ2SEQ_DATA_DIR is not set, so the corpus comes from the Hugging Face hub", flush=True)
    for flag, path in (("--ckpt", args.ckpt), ("--transformer-ckpt", args.transformer_ckpt)):
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path} does not exist")
    import torch

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
    started = time.monotonic()
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
    print(f"{device}: matmul GFLOP/s fp32 {gflops['fp32']:,.0f}, bf16 {_figure(gflops['bf16'])}", flush=True)
    if not bf16:
        print(f"bf16: {report['bf16']}; measuring float32 only", flush=True)
    print(
        f"{'variant':<18} {'fp32 tok/s':>10} {'bf16 tok/s':>10} {'MFU fp32':>8} {'MFU bf16':>8} {'peak RSS MB fp32 / bf16':>24}"
        + ("   peak GPU MB fp32 / bf16" if device.type == "cuda" else ""),
        flush=True,
    )
    for name, overrides in [*VARIANTS.items(), ("default_bahdanau", None)]:
        if name not in rows:
            continue
        base = [f"train.batch_tokens={batch_tokens}", *overrides] if overrides else ["attention=bahdanau"]
        base.append(f"train.device={args.device}")
        fp32 = measure([*base, "train.precision=fp32"], args)
        half = measure([*base, "train.precision=bf16"], args) if bf16 else {}
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
        (report["train"] if overrides else report.setdefault("default_model", {}))[name] = row
        print(
            f"{name:<18} {row['tgt_tok_per_s']:>10,.0f} {_figure(row['tgt_tok_per_s_bf16']):>10} "
            f"{row['mfu']:>8.1%} {_figure(row['mfu_bf16'], '.1%'):>8} "
            f"{row['peak_rss_mb']:>15,.0f} / {_figure(row['peak_rss_mb_bf16']):>6}"
            + (
                f"   {row['peak_gpu_mb']:>13,.0f} / {_figure(row['peak_gpu_mb_bf16']):>6}"
                if "peak_gpu_mb" in row
                else ""
            ),
            flush=True,
        )
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
            f"greedy {d['greedy_sent_per_s']:,.0f} / {_figure(d.get('greedy_sent_per_s_bf16'))}, "
            f"beam 5 {d['beam5_sent_per_s']:,.0f} / {_figure(d.get('beam5_sent_per_s_bf16'))}; "
            f"mean output {d['mean_output_len']:.1f} / {_figure(d.get('mean_output_len_bf16'), '.1f')} tokens"
        )
    if device.type == "cpu":  # the peers are measured on this CPU
        print_peer_ratios(report)
    report["seconds"] = time.monotonic() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} in {report['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
