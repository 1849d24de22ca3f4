"""Validation BLEU against training wall time for several runs, from their TensorBoard events.

    python scripts/plot_curves.py outputs/run_a outputs/run_b ... --out docs/bleu_vs_time.png

Time is measured from the creation of each run's event file (the start of training, after data
loading) to each validation, so it includes validation time. Prints a Markdown table too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.plots import close


def curve(run: Path) -> tuple[str, list[tuple[float, int, float]]]:
    events = sorted(run.glob("events.out.tfevents.*"))
    if not events:
        raise SystemExit(f"error: no TensorBoard event file in {run}")
    start = float(events[0].name.split(".")[3])  # the file name holds its creation time
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    config = json.loads((run / "config.json").read_text())
    att = config["attention"]
    label = att["type"] if att["type"] == "none" else f"{att['type']} ({att['score']})"
    return label, [((e.wall_time - start) / 60, e.step, e.value) for e in acc.Scalars("valid/bleu")]


def best_by(minutes: list[float], bleu: list[float], limit: float) -> str:
    """The best BLEU of the validations within ``limit`` minutes, as text."""
    seen = [b for m, b in zip(minutes, bleu) if m <= limit + 0.1]
    return f"{max(seen):.1f}" if seen else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", default="docs/bleu_vs_time.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")  # the figure goes to a file: no window, whatever the session's display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    print("| run | BLEU @ 5 min | @ 10 min | @ 15 min | @ 20 min (final) | best | steps |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        label, points = curve(run)
        minutes = [p[0] for p in points]
        bleu = [p[2] for p in points]
        ax.plot(minutes, bleu, marker="o", markersize=3, label=label)

        at = [best_by(minutes, bleu, limit) for limit in (5, 10, 15)]
        print(f"| {label} | {' | '.join(at)} | {bleu[-1]:.1f} | {max(bleu):.1f} | {points[-1][1]} |")
    ax.axhline(37.5, color="grey", linestyle=":", linewidth=1, label="target 37.5")
    ax.set_xlabel("training wall time, minutes (2 CPU cores, validation included)")
    ax.set_ylabel("validation BLEU (sacreBLEU, greedy)")
    ax.set_title("Multi30k de→en, default model")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    close(fig)
    print(f"\nfigure: {args.out}")


if __name__ == "__main__":
    main()
