"""Figures: labelled attention heatmaps (source tokens on x, output tokens on y) and BLEU by length.

The figures are built without pyplot, so importing this module chooses no matplotlib backend for
its caller: ``fig.savefig`` renders with Agg whatever the backend, TensorBoard draws them itself,
and a notebook shows one returned at the end of a cell (:class:`Picture`). A script that draws
with pyplot itself picks its backend (``scripts/attention_demo.py``: Agg).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D


class Picture(Figure):
    """A Figure that Jupyter shows as a PNG by itself, under any backend (pyplot never holds it)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def attention_figure(weights, src_tokens: Sequence[str], out_tokens: Sequence[str], title: str = "") -> Figure:
    """A heatmap of ``weights (len(out_tokens), len(src_tokens))``; the caller closes or logs it."""
    rows, cols = len(out_tokens), len(src_tokens)
    fig = Picture(figsize=(max(4.0, 0.32 * cols + 1.5), max(3.0, 0.3 * rows + 1.2)))
    ax = fig.subplots()
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


def heads_figure(heads, src_tokens: Sequence[str], out_tokens: Sequence[str], title: str = "") -> Figure:
    """Every head's heatmap, ``heads (N, len(out_tokens), len(src_tokens))``, side by side, then their mean."""
    n = len(heads)
    rows, cols = len(out_tokens), len(src_tokens)
    width = max(3.2, 0.26 * cols + 1.4)
    fig = Picture(figsize=(width * (n + 1), max(3.0, 0.28 * rows + 1.4)))
    axes = fig.subplots(1, n + 1, squeeze=False)
    panels = [*heads, sum(heads) / n]
    for k, (ax, weights) in enumerate(zip(axes[0], panels)):
        image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(cols), labels=list(src_tokens), rotation=90, fontsize=7)
        ax.set_yticks(range(rows), labels=list(out_tokens) if k == 0 else [""] * rows, fontsize=7)
        ax.set_title(f"head {k + 1}" if k < n else f"mean of {n} heads", fontsize=9)
        ax.set_xlabel("source")
    axes[0][0].set_ylabel("output")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.02)
    return fig


def close(fig: Figure) -> None:
    """Release ``fig``: one made through pyplot leaves pyplot's list, one of ours drops its artists."""
    if fig.canvas.manager is not None:  # pyplot's (a script's own figure)
        import matplotlib.pyplot as plt

        plt.close(fig)
    else:
        fig.clear()


def length_figure(series: dict[str, list[dict]], title: str = "BLEU by source length") -> Figure:
    """BLEU against source-length bucket, one line per split, with 95% bootstrap error bars.

    ``series`` maps a split name to its buckets, each ``{"range", "n", "bleu", "ci95"}``; empty
    buckets (``bleu`` None) are left out of that split's line. Cf. Bahdanau et al. (2015), Fig. 2.
    """
    fig = Picture(figsize=(6.0, 3.8))
    ax = fig.subplots()
    _draw_length(ax, series, title)
    fig.tight_layout()
    return fig


MARKERS = ("s", "^", "v", "D")  # the natural test splits of a length-study panel


def length_study_figure(
    panels: dict[str, dict[str, list[dict]]], natural: dict[str, dict[str, dict[str, list[dict]]]], title: str
) -> Figure:
    """One panel per training regime, one line per model, its 95 % interval as a band.

    ``panels[regime][model]`` are the buckets of the long inputs (every k pooled);
    ``natural[regime][split][model]`` those of a natural test split, drawn as hollow markers.
    """
    fig = Picture(figsize=(5.6 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)
    for ax, (name, series) in zip(axes[0], panels.items()):
        splits = natural.get(name, {})
        for i, (model, buckets) in enumerate(series.items()):
            _length_line(ax, model, buckets, [models.get(model, []) for models in splits.values()], f"C{i}")
        labels = [b["range"] for b in next(iter(series.values()))]
        ax.set_xticks(range(len(labels)), labels=labels, rotation=30)
        ax.set(xlabel="source length (words)", ylabel="BLEU")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        for j, split in enumerate(splits):  # one key per natural split, in the models' colours
            style = {"linestyle": "none", "marker": MARKERS[j % 4], "markerfacecolor": "none", "color": "0.3"}
            handles.append(Line2D([], [], label=f"{split}, natural sentences", **style))
        ax.legend(handles=handles, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _length_line(ax, model: str, buckets: list[dict], natural: list[list[dict]], colour: str) -> None:
    """One model's BLEU by length with its band, and its natural-split buckets as hollow markers."""
    points = [(x, b) for x, b in enumerate(buckets) if b["bleu"] is not None]
    xs = [x for x, _ in points]
    ax.plot(xs, [b["bleu"] for _, b in points], marker="o", color=colour, label=model)
    lows, highs = [b["ci95"][0] for _, b in points], [b["ci95"][1] for _, b in points]
    ax.fill_between(xs, lows, highs, color=colour, alpha=0.18, linewidth=0)
    for j, split in enumerate(natural):
        pts = [(x, b["bleu"]) for x, b in enumerate(split) if b["bleu"] is not None]
        style = {"linestyle": "none", "marker": MARKERS[j % 4], "markerfacecolor": "none", "color": colour}
        ax.plot([x for x, _ in pts], [y for _, y in pts], **style)


def _draw_length(ax, series: dict[str, list[dict]], title: str) -> None:
    labels = [b["range"] for b in next(iter(series.values()))] if series else []
    for name, buckets in series.items():
        points = [(x, b) for x, b in enumerate(buckets) if b["bleu"] is not None]
        xs = [x for x, _ in points]
        ys = [b["bleu"] for _, b in points]
        low = [max(0.0, b["bleu"] - b["ci95"][0]) for _, b in points]  # a percentile interval may
        high = [max(0.0, b["ci95"][1] - b["bleu"]) for _, b in points]  # miss the point estimate
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=name)
    ax.set_xticks(range(len(labels)), labels=labels)
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
