"""Training: :func:`train` runs (or resumes) one run in its directory.

- :mod:`~seq2seq.training.run`: the run directory (refuse to overwrite, lock, resume, train.log);
- :mod:`~seq2seq.training.trainer`: the :class:`Trainer`, the loop read top to bottom;
- :mod:`~seq2seq.training.schedule`: the learning-rate policy as one object;
- :mod:`~seq2seq.training.validation`: validation loss, BLEU, attention statistics, heatmaps;
- :mod:`~seq2seq.training.state`: what a checkpoint holds and how a run comes back from one;
- :mod:`~seq2seq.training.progress`: the counters that survive a resume, and the progress line;
- :mod:`~seq2seq.training.checkpoint`, :mod:`~seq2seq.training.averaging`,
  :mod:`~seq2seq.training.distributed`, :mod:`~seq2seq.training.loss`,
  :mod:`~seq2seq.training.rundir`, :mod:`~seq2seq.training.signals`,
  :mod:`~seq2seq.training.faults`: atomic checkpoint files, the weight average, DDP, the loss,
  the run-dir lock, SIGINT/SIGTERM, and the crash points the recovery tests use.

The names below load lazily, so importing :mod:`seq2seq.training.checkpoint` (as translation
does) does not import the loop.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Trainer", "TrainingError", "train"]

_WHERE = {"train": "seq2seq.training.run", "Trainer": "seq2seq.training.trainer", "TrainingError": "seq2seq.errors"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'seq2seq.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
