"""Process-wide settings of the CPU math libraries that training depends on.

oneDNN (the LSTM kernels, and bfloat16 matrix multiplies) keeps every primitive it builds in a
cache of up to 1,024 entries, one per operation and shape. Length-sorted batches come in a few
hundred shapes, so a long run fills the whole cache, and each entry holds its own buffers. On the
peer Luong model in bf16, resident memory reached 1.96 GB after 400 steps and 2.45 GB after 1,600
and was still growing; with 256 entries it was 1.64 GB after 400 steps, with 128 1.5 GB. 256
keeps a whole step's primitives (the Bahdanau step loop has many) with room to spare: training
speed with 256 and 1,024 entries was the same within this host's noise, while 128 measured up to
6 % slower on Bahdanau in bf16.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_CAPACITY = 256


def bound_onednn_cache(environ: MutableMapping[str, str] = os.environ) -> str:
    """Cap oneDNN's primitive cache unless the user set its size; returns the capacity in effect.

    oneDNN reads the variable when it builds its first primitive, so this must run before the
    first LSTM or bf16 matmul of the process (the trainer calls it first thing); later calls
    change nothing.
    """
    return environ.setdefault(ONEDNN_CACHE_VARIABLE, str(ONEDNN_CACHE_CAPACITY))
