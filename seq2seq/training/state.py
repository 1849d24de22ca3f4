"""What a checkpoint holds and how a run comes back from one.

``best.pt`` holds the evaluated weights (the average under ``train.ema``), the config, the
vocabulary, the progress and the metrics: what translation and evaluation load. ``last.pt``
adds what resuming needs: the trained weights where they differ, the optimiser, the learning-rate
schedule and every rank's RNG state, so that a resumed run continues exactly.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config
from seq2seq.data.vocab import Vocab
from seq2seq.errors import CheckpointError, RunDirError
from seq2seq.training.averaging import WeightAverage
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.training.distributed import Distributed
from seq2seq.training.progress import Progress
from seq2seq.training.schedule import LearningRate

log = logging.getLogger("seq2seq")


class Checkpointer:
    """Writes ``best.pt`` and ``last.pt`` of one run, and restores a run from ``last.pt``."""

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        dist: Distributed,
        training: tuple[torch.nn.Module, torch.optim.Optimizer, LearningRate, WeightAverage | None],
        vocab: Vocab,
        data_fingerprint: dict[str, Any],
    ):
        self.config, self.out_dir, self.dist = config, out_dir, dist
        self.model, self.optimizer, self.lr, self.average = training
        self.vocab, self.data_fingerprint = vocab, data_fingerprint

    def payload(self, progress: Progress, metrics: dict[str, float], full: bool) -> dict[str, Any]:
        """A checkpoint: ``model`` holds the evaluated weights; a full one adds what resuming needs."""
        payload = {
            "config": self.config.to_dict(),
            "vocab": self.vocab.state_dict(),
            "model": self.average.state_dict() if self.average is not None else self.model.state_dict(),
            "progress": asdict(progress),
            "metrics": dict(metrics),
            "data_fingerprint": self.data_fingerprint,
        }
        if full:
            if self.average is not None:
                payload["trained_model"] = self.model.state_dict()
            payload["optimizer"] = self.optimizer.state_dict()
            payload["scheduler"] = self.lr.state_dict()
            payload["rng"] = rng_state()
        return payload

    def save_last(self, progress: Progress, metrics: dict[str, float], rng_by_rank: list | None) -> None:
        payload = self.payload(progress, metrics, full=True)
        if self.dist.enabled:
            payload["rng_by_rank"] = rng_by_rank
        save_checkpoint(payload, self.out_dir / "last.pt")

    def save_best(self, progress: Progress, metrics: dict[str, float]) -> None:
        save_checkpoint(self.payload(progress, metrics, full=False), self.out_dir / "best.pt")

    def restore(self, payload: dict[str, Any]) -> tuple[Progress, dict[str, float]]:
        """Weights, optimiser, schedule and RNG from ``payload`` (a ``last.pt``); returns its progress and metrics."""
        trained = payload.get("trained_model", payload["model"])
        self.model.load_state_dict(trained)
        if self.average is not None:  # a run that had no average starts one from its weights
            self.average.load_state_dict(payload["model"] if "trained_model" in payload else trained)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.lr.load_state_dict(payload.get("scheduler"))
        progress = Progress(**payload["progress"])
        if progress.epoch_batching is None:  # written before the field existed: by its own config
            saved = payload["config"]["train"]
            progress.epoch_batching = [saved["batch_tokens"], saved["seed"], saved.get("pad_to_multiple", 1)]
        self._restore_rng(payload, progress.step)
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            self.out_dir / "last.pt",
            progress.step,
            progress.epoch + 1,
            progress.batch,
        )
        return progress, dict(payload.get("metrics", {}))

    def _restore_rng(self, payload: dict[str, Any], step: int) -> None:
        saved_ranks = payload.get("rng_by_rank") or [payload["rng"]]
        if len(saved_ranks) == self.dist.world:
            rng = saved_ranks[self.dist.rank]
            torch.set_rng_state(rng["torch"])
            random.setstate(_as_tuple(rng["python"]))
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            return
        seed = self.config.train.seed + 7919 * step + self.dist.rank  # another number of processes
        torch.manual_seed(seed)
        random.seed(seed)
        log.warning(
            "last.pt was written by %d processes and this run has %d: the data order continues exactly, "
            "dropout draws do not",
            len(saved_ranks),
            self.dist.world,
        )

    def repair_best(self, progress: Progress, metrics: dict[str, float]) -> None:
        """Rewrite best.pt if a crash hit between writing last.pt and best.pt at the best validation."""
        path = self.out_dir / "best.pt"
        if progress.best_bleu < 0 or progress.best_step != progress.step:
            return  # the best model is not the one just restored, so best.pt was written before
        try:
            written = load_checkpoint(path)["progress"]["step"] if path.exists() else None
        except CheckpointError:
            written = None
        if written != progress.best_step:
            self.save_best(progress, metrics)
            log.info("rewrote %s with the step-%d model that a crash kept from it", path, progress.best_step)


def check_same_data(saved: dict | None, now: dict[str, Any], config: Config, last: Path) -> None:
    """Refuse to resume on a corpus other than the checkpoint's, unless ``train.resume_data=changed``."""
    if not saved:
        log.warning("last.pt predates corpus fingerprints: cannot tell whether the corpus changed")
        return
    changes = [
        f"{split} split: {then['pairs']:,} pairs then, {current['pairs']:,} now"
        + ("" if then["pairs"] != current["pairs"] else " (same count, different text)")
        for split in ("train", "valid")
        if (then := saved.get(split)) and (current := now[split]) and then != current
    ]
    if not changes:
        return
    if config.train.resume_data == "changed":
        log.warning("resuming on a changed corpus (train.resume_data=changed): %s", "; ".join(changes))
        return
    raise RunDirError(
        f"train.resume=true but the corpus differs from the one {last} was trained on "
        f"({'; '.join(changes)}); restore that corpus, or continue on this one with train.resume_data=changed"
    )


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
