"""Token-budgeted, length-bucketed batches with exact padding masks.

Each epoch the training pairs are shuffled, sorted by length (a stable sort, so pairs of equal
length stay in shuffled order), cut into batches whose padded size stays within
``batch_tokens``, and the batches are shuffled. Sorted batches are ~95 % real tokens on
Multi30k, random ones ~50 %. The order depends only on (seed, epoch), so a resumed run can
rebuild an epoch and skip the batches it has already trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.model import BOS, EOS, PAD


@dataclass
class Batch:
    src: Tensor  # (B, S) source ids + EOS, PAD-padded
    src_lens: Tensor  # (B,) real lengths, EOS included
    tgt_in: Tensor  # (B, T) BOS + target ids, PAD-padded
    tgt_out: Tensor  # (B, T) target ids + EOS, PAD-padded
    n_tokens: int  # real target tokens (EOS included, padding excluded)

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.src.to(device, non_blocking=True),
            self.src_lens,
            self.tgt_in.to(device, non_blocking=True),
            self.tgt_out.to(device, non_blocking=True),
            self.n_tokens,
        )


def pad(seqs: Sequence[Sequence[int]], prefix: Sequence[int] = (), suffix: Sequence[int] = ()) -> Tensor:
    """Right-pad ``prefix + seq + suffix`` for each sequence into a ``(B, L)`` LongTensor."""
    width = max(len(s) for s in seqs) + len(prefix) + len(suffix)
    out = torch.full((len(seqs), width), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids = [*prefix, *seq, *suffix]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def source_tensor(src: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Padded EOS-terminated source ids ``(B, S)`` and their lengths ``(B,)``."""
    return pad(src, suffix=(EOS,)), torch.tensor([len(s) + 1 for s in src], dtype=torch.long)


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]) -> Batch:
    src_ids, src_lens = source_tensor(src)
    return Batch(src_ids, src_lens, pad(tgt, prefix=(BOS,)), pad(tgt, suffix=(EOS,)), sum(len(t) + 1 for t in tgt))


def token_batches(
    src_lens: Sequence[int], tgt_lens: Sequence[int], batch_tokens: int, generator: torch.Generator | None = None
) -> list[list[int]]:
    """Index batches whose padded size ``n x max(len + 1)`` stays within ``batch_tokens``.

    With a generator: shuffle, stable-sort by length, batch, shuffle the batches. Without one:
    sorted by length, in order (for evaluation). A pair longer than the budget gets a batch alone.
    """
    n = len(src_lens)
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    order.sort(key=lambda i: (tgt_lens[i], src_lens[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = max(src_lens[i], tgt_lens[i]) + 1  # + EOS (source, target out) or BOS (target in)
        if current and max(longest, size) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def epoch_batches(src_lens: Sequence[int], tgt_lens: Sequence[int], batch_tokens: int, seed: int, epoch: int):
    """The training batches of one epoch, determined by ``(seed, epoch)`` alone."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return token_batches(src_lens, tgt_lens, batch_tokens, generator)
