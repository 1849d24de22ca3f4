"""TensorBoard logging for one run: scalars, labelled figures, text, hparams."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from seq2seq import plots


class Tracker:
    """A thin wrapper over ``SummaryWriter`` writing event files into the run directory."""

    def __init__(self, log_dir: str | Path):
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def figure(self, tag: str, fig: Figure, step: int) -> None:
        self.writer.add_figure(tag, fig, step, close=False)
        plots.close(fig)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def hparams(self, hparams: dict[str, float | int | str | bool], metrics: dict[str, float]) -> None:
        """Once per run, at the end: TensorBoard writes these into a sub-run named ``hparams``."""
        self.writer.add_hparams(hparams, metrics, run_name="hparams")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
