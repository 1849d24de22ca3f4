"""The hardware a process computes on: the device, its numeric precision, and the CPU kernel caches.

**Device.** Training (``train.device``), translation and evaluation (``--device``) name it as
users write it, ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and :func:`pick_device`
resolves it, so a device the machine lacks is one clear error before any work starts.

**Precision.** float32, or bfloat16 autocast (``auto``: on a CPU that computes it natively).
Under ``bf16`` the weights, optimiser state, softmaxes and the loss stay in float32; autocast runs
matrix multiplies (and the LSTM) in bfloat16. Whether a device can run a bf16 LSTM at all is asked
of the device itself (:func:`bf16_lstm_runs`): oneDNN has no bf16 LSTM kernel for CPUs without
AVX512-BF16 or AMX, and flags in ``/proc/cpuinfo`` say nothing about the installed oneDNN (nor
exist on macOS). ``precision=bf16`` where it cannot run is a :class:`~seq2seq.errors.ConfigError`
naming the device, before any work starts.

**Kernel caches.** oneDNN's primitive cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) and ideep's
cache of bf16 matmul operations (``LRU_CACHE_CAPACITY``) keep one entry per operation and tensor
shape, and length-sorted batches and shrinking decoding batches bring many shapes; their default
of 1,024 entries lets resident memory grow for no speed. :func:`bound_kernel_caches` caps them
(docs/design-notes.md has the measurements behind the numbers); each library reads its variable
when it builds its first kernel, so it runs first thing in the trainer and the translator. A
value the user set wins.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
from collections.abc import MutableMapping
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from pathlib import Path

import torch

from seq2seq.config import DEVICES, PRECISIONS
from seq2seq.errors import ConfigError

CHOICES = "auto, cpu, cuda, cuda:N or mps"
CACHE_CAPACITIES = {
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": 256,  # an epoch's few dozen batch shapes need 64-256 LSTM/matmul kernels
    "LRU_CACHE_CAPACITY": 16,  # the few shapes a decoding step repeats; misses still hit oneDNN's cache
}


# -- the device ------------------------------------------------------------------------------


def mps_available() -> bool:
    """Apple's Metal (MPS) backend, where this torch build has it and the machine supports it."""
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def pick_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """``name`` as a torch device: ``auto`` is the first GPU where one is visible, else Apple's MPS, else the CPU.

    ``option`` names the setting in the error message (``train.device``, ``--device``).
    """
    name = str(name)  # a torch.device is checked like its name
    if re.fullmatch(DEVICES, name) is None:
        raise ConfigError(f"{option}={name!r} is not a device; choose {CHOICES}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option}={name} but this torch build sees no CUDA device; use {option}=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{option}={name} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    if device.type == "mps" and not mps_available():
        raise ConfigError(f"{option}=mps but this machine or torch build has no Apple MPS device; use {option}=cpu")
    return device


# -- the precision ---------------------------------------------------------------------------


@cache  # one tiny forward per device and process
def bf16_lstm_runs(device: torch.device) -> bool:
    """Whether an LSTM forward under bf16 autocast runs on ``device`` (asked by running one)."""
    try:
        lstm = torch.nn.LSTM(8, 8, batch_first=True).to(device)
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            lstm(torch.zeros(2, 3, 8, device=device))
    except (RuntimeError, NotImplementedError):  # oneDNN: "could not create a primitive descriptor ..."
        return False
    return True


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux
        return set()


@cache  # read once per device, not once per decoded batch
def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (CUDA with bf16, a CPU with AVX512-BF16 or AMX).

    Elsewhere bf16 autocast is emulated (or, for the LSTM, missing) and slower than float32, so
    ``precision=auto`` keeps fp32. A CPU counts only if it lists the flag *and* runs a bf16 LSTM:
    ``ONEDNN_MAX_CPU_ISA=AVX2`` on a newer CPU, say, keeps the flag but not the kernel.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"}) and bf16_lstm_runs(device)


def describe_device(device: torch.device) -> str:
    """``device`` in words for messages: the CPU's model name, or the GPU's."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return f"this CPU ({line.split(':', 1)[1].strip()})"
        except OSError:
            pass
        return f"this CPU ({platform.processor() or platform.machine()})"
    return str(device)


def resolve_precision(name: str, device: torch.device, option: str = "precision") -> str:
    """``auto``, ``fp32`` or ``bf16`` -> ``fp32`` or ``bf16``; ``bf16`` where it cannot run is a ConfigError.

    ``auto`` picks bf16 on a CPU that computes it natively, where the matrix multiplies bound a step.
    On a GPU this model's kernels are small enough that their launches bound a step and autocast
    only adds cast kernels, so ``auto`` keeps float32 there; ``bf16`` still asks for it. ``option`` names the
    setting in the error (``train.precision``, ``--precision``).
    """
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cpu" and native_bf16(device) else "fp32"
    if name == "bf16" and not bf16_lstm_runs(device):
        raise ConfigError(
            f"{option}=bf16 but {describe_device(device)} cannot run bfloat16 LSTMs "
            f"(on a CPU they need AVX512-BF16 or AMX); use {option}=fp32 or {option}=auto"
        )
    return name


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager:
    """The context to run a forward pass in: bf16 autocast for ``bf16``, nothing for ``fp32``."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


# -- the CPU kernel caches -------------------------------------------------------------------


def bound_kernel_caches(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Cap the kernel caches unless the user sized them; returns the capacities in effect."""
    return {name: environ.setdefault(name, str(capacity)) for name, capacity in CACHE_CAPACITIES.items()}


def release_free_memory() -> None:
    """Hand the C allocator's free pages back to the system, where the allocator is glibc's (``malloc_trim``).

    Planning an epoch of millions of pairs sorts arrays of tens of MB; glibc keeps the freed
    buffers in the process (about 70 MB at 4.5 million pairs, in every rank). Elsewhere nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # the running C library: glibc has it, musl and macOS do not
    except (OSError, AttributeError):
        return None
