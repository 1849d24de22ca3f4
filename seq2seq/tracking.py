"""TensorBoard logging for one run: scalars, labelled figures, text, hparams."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from seq2seq import plots
from seq2seq.config import Config


class Tracker:
    """A thin wrapper over ``SummaryWriter`` writing event files into the run directory.

    ``Tracker(None)`` records nothing: the other ranks of a multi-process run use it.
    """

    def __init__(self, log_dir: str | Path | None):
        self.writer = SummaryWriter(log_dir=str(log_dir)) if log_dir is not None else None
        self.logged: set[str] = set()  # scalar tags written so far

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
                self.logged.add(tag)

    def figure(self, tag: str, fig: Figure, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, fig, step, close=False)
        plots.close(fig)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def hparams(self, hparams: dict[str, float | int | str | bool], metrics: dict[str, float], step: int) -> None:
        """Once per run, at the end: the HPARAMS tab's entry for this run, in this run's own event file.

        ``SummaryWriter.add_hparams`` would write a second run (``hparams/``) holding a copy of every
        metric at step 0; here the metrics the run already logs are found by their tags, and only the
        others (``best/valid_bleu``, say) are logged, at ``step``.
        """
        if self.writer is None:
            return
        experiment, start, end = hparams_summaries(hparams, metrics)
        writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        self.scalars({k: v for k, v in metrics.items() if k not in self.logged}, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def hparams_of(config: Config) -> dict[str, Any]:
    """The run's settings as TensorBoard's HParams dashboard takes them: flat, scalar values."""
    flat = {}
    for section in ("model", "attention", "train"):
        for key, value in asdict(getattr(config, section)).items():
            if isinstance(value, (int, float, str, bool)):
                flat[f"{section}.{key}"] = value
    flat["data.name"] = f"{config.data.name}:{config.data.src}-{config.data.tgt}"
    return flat
