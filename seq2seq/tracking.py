"""TensorBoard logging for one run: scalars, labelled figures, text, hparams."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from seq2seq import plots


class Tracker:
    """A thin wrapper over ``SummaryWriter`` writing event files into the run directory.

    ``Tracker(None)`` records nothing: the other ranks of a multi-process run use it.
    """

    def __init__(self, log_dir: str | Path | None):
        self.writer = SummaryWriter(log_dir=str(log_dir)) if log_dir is not None else None

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def figure(self, tag: str, fig: Figure, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, fig, step, close=False)
        plots.close(fig)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def hparams(self, hparams: dict[str, float | int | str | bool], metrics: dict[str, float]) -> None:
        """Once per run, at the end: TensorBoard writes these into a sub-run named ``hparams``."""
        if self.writer is not None:
            self.writer.add_hparams(hparams, metrics, run_name="hparams")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
