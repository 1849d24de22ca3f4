"""Numeric precision: float32, or bfloat16 autocast (``auto``: on a CPU that computes it natively).

Under ``bf16`` the weights, optimiser state, softmaxes and the loss stay in float32; autocast
runs matrix multiplies (and the LSTM) in bfloat16. Training, validation and decoding share these
helpers, so ``precision=auto`` means the same everywhere.

Whether a device can run a bf16 LSTM at all is asked of the device itself (:func:`bf16_lstm_runs`):
oneDNN has no bf16 LSTM kernel for CPUs without AVX512-BF16 or AMX, and flags in ``/proc/cpuinfo``
say nothing about the installed oneDNN (nor exist on macOS). ``precision=bf16`` where it cannot
run is a :class:`~seq2seq.errors.ConfigError` naming the device, before any work starts.
"""

from __future__ import annotations

import platform
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from pathlib import Path

import torch

from seq2seq.config import PRECISIONS
from seq2seq.errors import ConfigError


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

    ``auto`` picks bf16 on a CPU that computes it natively, where the matrix multiplies bound a step
    and bf16 runs them about 2x faster. On a GPU this model's kernels are small enough that their
    launches bound a step and autocast only adds cast kernels, so ``auto`` keeps float32 there
    (docs/performance.md has the measurements); ``bf16`` still asks for it. ``option`` names the
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
