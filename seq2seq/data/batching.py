"""Token-budgeted, length-bucketed batches with exact padding masks.

Each epoch the training pairs are shuffled, sorted by length (a stable sort, so pairs of equal
length stay in shuffled order), cut into batches whose padded size stays within
``batch_tokens``, and the batches are shuffled. Sorted batches are ~95 % real tokens on
Multi30k, random ones ~50 %. The order depends only on (seed, epoch), so a resumed run can
rebuild an epoch and skip the batches it has already trained on.

With ``multiple`` > 1 (``train.pad_to_multiple``) lengths are rounded up to a multiple of it,
both for sorting and for padding, so an epoch's batches come in a few dozen shapes instead of
hundreds, and the same shapes every epoch. On CPU that is worth more than the padding costs:
oneDNN builds (JIT-compiles) a kernel for every new shape, and tensors of ever-new sizes
fragment the heap, so resident memory keeps growing. Padding never changes the result: the
encoder and attention mask it and the loss ignores it (tests/test_batching.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.data.vocab import BOS, EOS, PAD


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


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad(
    seqs: Sequence[Sequence[int]], prefix: Sequence[int] = (), suffix: Sequence[int] = (), multiple: int = 1
) -> Tensor:
    """Right-pad ``prefix + seq + suffix`` for each sequence into a ``(B, L)`` LongTensor.

    ``L`` is the longest such sequence, rounded up to a multiple of ``multiple``.
    """
    width = round_up(max(len(s) for s in seqs) + len(prefix) + len(suffix), multiple)
    out = torch.full((len(seqs), width), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids = [*prefix, *seq, *suffix]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def source_tensor(src: Sequence[Sequence[int]], multiple: int = 1) -> tuple[Tensor, Tensor]:
    """Padded EOS-terminated source ids ``(B, S)`` and their lengths ``(B,)``."""
    return pad(src, suffix=(EOS,), multiple=multiple), torch.tensor([len(s) + 1 for s in src], dtype=torch.long)


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], multiple: int = 1) -> Batch:
    """A batch of id sequences, each side padded to its longest (+ EOS/BOS), rounded up to ``multiple``."""
    src_ids, src_lens = source_tensor(src, multiple)
    tgt_in, tgt_out = pad(tgt, prefix=(BOS,), multiple=multiple), pad(tgt, suffix=(EOS,), multiple=multiple)
    return Batch(src_ids, src_lens, tgt_in, tgt_out, sum(len(t) + 1 for t in tgt))


def token_batches(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    batch_tokens: int,
    generator: torch.Generator | None = None,
    multiple: int = 1,
) -> list[list[int]]:
    """Index batches whose padded size ``n x max(round_up(len + 1))`` stays within ``batch_tokens``.

    With a generator: shuffle, stable-sort by length, batch, shuffle the batches. Without one:
    sorted by length, in order (for evaluation). A pair longer than the budget gets a batch alone.
    Lengths are rounded up to ``multiple`` (see the module docstring), as :func:`collate` pads.
    """
    n = len(src_lens)
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    src_len = [round_up(s + 1, multiple) for s in src_lens]  # + EOS
    tgt_len = [round_up(t + 1, multiple) for t in tgt_lens]  # + EOS (target out) or BOS (target in)
    order.sort(key=lambda i: (tgt_len[i], src_len[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = max(src_len[i], tgt_len[i])
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


def epoch_batches(
    src_lens: Sequence[int], tgt_lens: Sequence[int], batch_tokens: int, seed: int, epoch: int, multiple: int = 1
) -> list[list[int]]:
    """The training batches of one epoch, determined by ``(seed, epoch)`` alone."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return token_batches(src_lens, tgt_lens, batch_tokens, generator, multiple)
