"""Figures: labelled attention heatmaps (source tokens on x, output tokens on y)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def attention_figure(weights, src_tokens: Sequence[str], out_tokens: Sequence[str], title: str = "") -> Figure:
    """A heatmap of ``weights (len(out_tokens), len(src_tokens))``; the caller closes or logs it."""
    rows, cols = len(out_tokens), len(src_tokens)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * cols + 1.5), max(3.0, 0.3 * rows + 1.2)))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), labels=list(src_tokens), rotation=90, fontsize=8)
    ax.set_yticks(range(rows), labels=list(out_tokens), fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
