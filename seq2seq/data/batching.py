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

import numpy as np
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


class Batches(Sequence[list[int]]):
    """Index batches held as one array: pair ``order[starts[k]:ends[k]]`` form batch ``k``.

    Millions of pairs as lists of Python ints would take ~40 bytes a pair; here they take 4, and
    each batch becomes a list only when it is read.
    """

    def __init__(self, order: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        self.order, self.starts, self.ends = order, starts, ends

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return Batches(self.order, self.starts[k], self.ends[k])
        return self.order[self.starts[k] : self.ends[k]].tolist()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))


def token_batches(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    batch_tokens: int,
    generator: torch.Generator | None = None,
    multiple: int = 1,
) -> Batches:
    """Index batches whose padded size ``n x max(round_up(len + 1))`` stays within ``batch_tokens``.

    With a generator: shuffle, stable-sort by length, batch, shuffle the batches. Without one:
    sorted by length, in order (for evaluation). A pair longer than the budget gets a batch alone.
    Lengths are rounded up to ``multiple`` (see the module docstring), as :func:`collate` pads.
    ``src_lens`` and ``tgt_lens`` may be lists or arrays (a mapped corpus's lengths).
    """
    n = len(src_lens)
    index = np.int32 if n < 1 << 31 else np.int64  # the order is held for a whole epoch: 4 bytes a pair
    order = (torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)).astype(index)
    src_len = (np.asarray(src_lens, dtype=np.int32) + multiple) // multiple * multiple  # round_up(len + 1)
    tgt_len = (np.asarray(tgt_lens, dtype=np.int32) + multiple) // multiple * multiple
    order = order[np.lexsort((src_len[order], tgt_len[order]))]  # stable: by target, then source length
    starts = _cuts(np.maximum(src_len, tgt_len)[order], batch_tokens)
    ends = np.append(starts[1:], n)
    if generator is not None:
        shuffled = torch.randperm(len(starts), generator=generator).numpy()
        starts, ends = starts[shuffled], ends[shuffled]
    return Batches(order, starts, ends)


def _cuts(sizes: np.ndarray, batch_tokens: int, chunk: int = 1 << 16) -> np.ndarray:
    """Where each batch starts in ``sizes`` (padded lengths in batch order): greedy, as pairs are added."""
    starts: list[int] = [0] if len(sizes) else []
    count = longest = 0
    for offset in range(0, len(sizes), chunk):
        for i, size in enumerate(sizes[offset : offset + chunk].tolist(), start=offset):
            if count and max(longest, size) * (count + 1) > batch_tokens:
                starts.append(i)
                count = longest = 0
            count += 1
            longest = max(longest, size)
    return np.array(starts, dtype=np.int64)


def epoch_batches(
    src_lens: Sequence[int], tgt_lens: Sequence[int], batch_tokens: int, seed: int, epoch: int, multiple: int = 1
) -> Batches:
    """The training batches of one epoch, determined by ``(seed, epoch)`` alone."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return token_batches(src_lens, tgt_lens, batch_tokens, generator, multiple)
