"""Run directories on disk, as the commands that read them find them: the newest run, a run's attention.

``make eval`` (:mod:`seq2seq.evaluate`) and ``make explore`` (:mod:`seq2seq.explorer`) both take a
run directory or default to the newest one under ``outputs/``; both import this module, which
imports neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from seq2seq.errors import RunDirError, Seq2SeqError


def find_latest_run(root: str | Path = "outputs") -> Path:
    """The directory under ``root`` (searched recursively) whose ``best.pt`` is newest."""
    found = [p for p in Path(root).rglob("best.pt") if p.is_file()] if Path(root).is_dir() else []
    if not found:
        raise RunDirError(f"no run with a best.pt under {root}/; train one first or pass --run DIR")
    return max(found, key=lambda p: p.stat().st_mtime).parent


@dataclass
class RunAttention:
    """What a run's ``config.json`` says of its attention: wiring, score, heads and the key size."""

    wiring: str
    score: str
    heads: int
    key_size: int  # the encoder's output size: the keys' (and values') size

    @property
    def name(self) -> str:
        """``bahdanau (concat)``, ``luong (general, 4 heads)``, ``none``: the explorer's model name."""
        if self.wiring == "none":
            return "none"
        return f"{self.wiring} ({self.score}{f', {self.heads} heads' if self.heads > 1 else ''})"


def run_attention(run_dir: str | Path) -> RunAttention:
    """The attention of the run in ``run_dir`` (its ``config.json``), or a one-line error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise Seq2SeqError(f"{run_dir} is not a directory: give a run directory (outputs/<date>/<time>_<attention>)")
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        attention, model = config["attention"], config["model"]
        return RunAttention(
            wiring=attention["type"],
            score=attention["score"],
            heads=int(attention.get("heads", 1)),
            key_size=model["encoder_size"] * (2 if model["bidirectional"] else 1),
        )
    except (OSError, ValueError, KeyError, TypeError):
        raise Seq2SeqError(f"{run_dir} has no readable config.json: is it a run directory of train.py?") from None
