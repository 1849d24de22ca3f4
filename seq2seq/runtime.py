"""Process-wide settings of the CPU math libraries that training and decoding depend on.

Two caches keep one entry per operation and tensor shape, and length-sorted batches (and decoding,
whose batches shrink as sentences finish) bring many shapes:

- oneDNN's primitive cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, 1,024 entries by default): the
  LSTM kernels and bfloat16 matrix multiplies. On the peer Luong model in bf16, resident memory
  reached 1.96 GB after 400 steps with 1,024 entries and 1.64 GB with 256; training speed with
  256 and 1,024 was the same within this host's noise, 128 measured up to 6 % slower on Bahdanau,
  and 64 saved another 100-125 MB at 8 % (Luong) and 23-25 % (Bahdanau) of the speed: the working
  set of kernels of an epoch's few dozen batch shapes sits between 64 and 256 entries.
- ideep's cache of the bf16 matmul operations PyTorch builds on oneDNN (``LRU_CACHE_CAPACITY``,
  1,024 entries by default). Its entries hold their own buffers, and validation's decoding adds
  hundreds of shapes: with 1,024 entries, the heap memory in use grew from 380 to 570 MB over
  three rounds of 240 steps and a validation (peer Luong model, bf16), with 16 or 64 it stayed
  at 280-320 MB. Every entry it misses is still in oneDNN's cache below, so a small capacity
  cost no speed: 1, 16, 64, 256 and 1,024 entries trained within noise of each other
  (alternating runs). 16 holds the few shapes a decoding step repeats.

Each library reads its variable when it builds its first kernel, so :func:`bound_kernel_caches`
must run before the first LSTM or bf16 matmul of the process (the trainer and the translator call
it first thing); later calls change nothing. A value the user set wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

CACHE_CAPACITIES = {
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": 256,
    "LRU_CACHE_CAPACITY": 16,
}


def bound_kernel_caches(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Cap the kernel caches unless the user sized them; returns the capacities in effect."""
    return {name: environ.setdefault(name, str(capacity)) for name, capacity in CACHE_CAPACITIES.items()}
