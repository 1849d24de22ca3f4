"""The device to compute on, named as users write it: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

Training (``train.device``), translation and evaluation (``--device``) resolve the name here, so
a device the machine lacks is one clear error before any work starts, in every command.
"""

from __future__ import annotations

import re

import torch

from seq2seq.config import DEVICES
from seq2seq.errors import ConfigError

CHOICES = "auto, cpu, cuda, cuda:N or mps"


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
