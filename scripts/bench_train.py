"""``make bench``'s training measurement, run by ``scripts/bench.py --child`` in a fresh process.

FLOPs per target token are counted on real batches: matrix multiplies by
``torch.utils.flop_counter`` over a forward and backward pass, plus the fused ``nn.LSTM`` layers
the counter cannot see, counted as 3 x 2 x 4H(I + H) per token, layer and direction (forward
plus a backward of twice the forward). Throughput is the median of several timed windows of the
product's own training step after a warm-up; MFU is the achieved FLOP/s over the rate of a large
matrix multiply of the same precision, measured in the same process.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

MAX_WARMUP = 150  # training steps before the timed windows: one per batch shape, up to this many


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
        """Count this call's tokens: a packed sequence's real positions, else batch x length."""
        x = inputs[0]
        tokens = x.data.size(0) if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x.shape[0] * x.shape[1]
        counter[0] += lstm_train_flops(module, tokens)

    return hook


def flops_per_token(trainer, batch_at) -> float:
    """Training FLOPs per target token of ``trainer``'s model, counted on a few real batches."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = trainer.device
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
    return (counted + lstm[0]) / tokens


def warm_up(trainer, batches, src_lens, tgt_lens, multiple, batch_at) -> int:
    """Train on one batch of each shape the epoch holds (at most MAX_WARMUP); returns the number of shapes.

    As after a first epoch: oneDNN has built its kernels and the heap has held every size of tensor once.
    """
    from seq2seq.data.batching import round_up

    shapes = {}
    for i, index in enumerate(batches):
        longest = (max(src_lens[j] for j in index) + 1, max(tgt_lens[j] for j in index) + 1)
        shapes.setdefault((len(index), *(round_up(n, multiple) for n in longest)), i)
    for i in list(shapes.values())[:MAX_WARMUP]:
        batch = batch_at(i)
        trainer.train_step(batch, 1.0 / batch.n_tokens)
    return len(shapes)


def timed_windows(trainer, batch_at, windows: int, steps: int) -> list[float]:
    """Target tokens per second of each of ``windows`` windows of ``steps`` training steps."""
    device = trainer.device
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
    return rates


def child(overrides: list[str], windows: int, steps: int) -> dict:
    """Measure one configuration in this (fresh) process; returns the figures as a dict."""
    import torch

    from seq2seq.data.batching import collate, epoch_batches
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
            """The ``i``-th batch of the epoch (wrapping around), collated."""
            index = batches[i % len(batches)]
            return collate([data.src_ids[j] for j in index], [data.tgt_ids[j] for j in index], multiple)

        per_token = flops_per_token(trainer, batch_at)
        shapes = warm_up(trainer, batches, src_lens, tgt_lens, multiple, batch_at)
        rates = timed_windows(trainer, batch_at, windows, steps)
        trainer.tracker.close()
    precision = config.train.precision
    rate = statistics.median(rates)
    ceiling = matmul_gflops(torch.bfloat16 if precision == "bf16" else torch.float32, device)
    gpu = {"peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20} if device.type == "cuda" else {}
    return {
        "tgt_tok_per_s": rate,
        "windows": rates,
        "flops_per_tgt_token": per_token,
        "mfu": rate * per_token / (ceiling * 1e9),
        "matmul_gflops": ceiling,
        "mean_tgt_tokens_per_batch": sum(tgt_lens[i] + 1 for b in batches for i in b) / len(batches),
        "batch_shapes": shapes,
        "warmup_steps": min(shapes, MAX_WARMUP),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        **gpu,
    }
