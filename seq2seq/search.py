"""Decoding: batched greedy search (beam search builds on the same step function).

Decoding stops for each sentence at EOS or after ``max_len`` tokens, a limit that scales with
the source (:func:`max_output_lengths`), so long sentences are not cut short by a fixed cap.
Finished sentences drop out of the batch, so the work shrinks as the batch finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.batching import source_tensor
from seq2seq.model import BOS, EOS, Seq2Seq


@dataclass
class Hypothesis:
    tokens: list[int]  # model ids, EOS excluded
    score: float  # sum of log-probabilities, EOS included
    attention: Tensor | None = None  # (len(tokens) + 1, S): one row per output step, EOS row last


def max_output_lengths(src_lens: Tensor, ratio: float, extra: int = 10) -> Tensor:
    """Per-sentence output limit: ``ratio * source length + extra``."""
    return (src_lens.float() * ratio).long() + extra


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq, src: Tensor, src_lens: Tensor, max_lens: Tensor, return_attention: bool = False
) -> list[Hypothesis]:
    """Greedy decoding of a padded batch ``src (B, S)``; one :class:`Hypothesis` per row, in order."""
    batch = src.size(0)
    memory = model.encode(src, src_lens)
    state = model.decoder.init_state(memory)
    y = torch.full((batch,), BOS, dtype=torch.long, device=src.device)
    alive = torch.arange(batch, device=src.device)  # original row of each row still decoding
    limits = max_lens.to(src.device)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    scores = torch.zeros(batch, device=src.device)
    rows: list[list[Tensor]] = [[] for _ in range(batch)]
    for t in range(int(limits.max())):
        logp, state, weights = model.step_logits(y, state, memory)  # (b, V)
        best, y = logp.max(-1)  # (b,), (b,)
        scores.index_add_(0, alive, best)
        done = (y == EOS) | (limits[alive] <= t + 1)
        for row, token in zip(alive.tolist(), y.tolist()):
            if token != EOS:
                tokens[row].append(token)
        if return_attention and weights is not None:
            for j, row in enumerate(alive.tolist()):
                rows[row].append(weights[j].float().cpu())
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            alive, y = alive[keep], y[keep]
            state, memory = state.select(keep), memory.select(keep)
    out = []
    for row in range(batch):
        attention = None
        if rows[row]:
            attention = torch.stack(rows[row])[:, : int(src_lens[row])]  # (T_out, S_real)
        out.append(Hypothesis(tokens[row], float(scores[row]), attention))
    return out


def decode_corpus(
    model: Seq2Seq,
    src_ids: list[list[int]],
    device: torch.device,
    batch_size: int = 128,
    max_ratio: float = 2.0,
    return_attention: bool = False,
) -> list[Hypothesis]:
    """Greedy-decode many sentences: batched in order of length, returned in input order."""
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    results: list[Hypothesis | None] = [None] * len(src_ids)
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        src, src_lens = source_tensor([src_ids[i] for i in rows])
        hyps = greedy_search(model, src.to(device), src_lens, max_output_lengths(src_lens, max_ratio), return_attention)
        for i, hyp in zip(rows, hyps):
            results[i] = hyp
    return results  # type: ignore[return-value]
