"""seq2seq: train, compare and inspect attention-based LSTM translation models.

    from seq2seq import Translator
    translator = Translator.from_checkpoint("outputs/.../best.pt")
    translator.translate("Ein Hund rennt über die Wiese.")

The public names load lazily, so ``import seq2seq`` (and the corpus child process) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Config", "Translator", "evaluate_run", "train"]

_WHERE = {
    "Config": "seq2seq.config",
    "Translator": "seq2seq.translator",
    "evaluate_run": "seq2seq.evaluate",
    "train": "seq2seq.training",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
