"""``make length-study``: what attention buys on long sentences (Bahdanau et al. 2015, Fig. 2).

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/length_study.py --budget 10m [--seeds 3]

Trains ``none``, ``luong`` and ``bahdanau`` with the same data, model sizes and time budget in
one Hydra multirun (under ``outputs/multirun/``), evaluates each run's ``best.pt`` on every test
split of the corpus with greedy decoding (``seq2seq.evaluate``), and reports BLEU per
source-length bucket with 95 % bootstrap intervals, separately per test split and for all test
splits together, plus the gap between each attention variant and the baseline per bucket with
a paired-bootstrap 95 % interval. With ``--seeds N`` every variant is trained N times and the
table gives mean ± std over seeds (intervals from the first seed). Writes
``length_study.{json,md,png}`` into the sweep directory (``--docs`` also copies the figure and
table into ``docs/``). ``--runs DIR`` re-evaluates an existing sweep without training.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = ("none", "luong", "bahdanau")
TOGETHER = "all test sets"


# validation picks best.pt and early stopping; 1,000 sentences keep it cheap inside the time budget
DEFAULTS = ["train.valid_max_sentences=1000"]


def train(sweep: Path, data: str, budget: str, seeds: list[int], overrides: list[str]) -> None:
    command = [
        sys.executable,
        "train.py",
        "-m",
        f"data={data}",
        f"attention={','.join(VARIANTS)}",
        f"train.seed={','.join(map(str, seeds))}",
        f"train.max_time={budget}",
        *DEFAULTS,
        *overrides,
        f"hydra.sweep.dir={sweep}",
    ]
    print("training:", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def collect(sweep: Path) -> dict[str, list[Path]]:
    """``{variant: [run dirs, by seed]}`` from a sweep directory."""
    runs: dict[str, list[Path]] = {}
    for config_path in sorted(sweep.glob("*/config.json")):
        if not (config_path.parent / "best.pt").exists():
            continue
        config = json.loads(config_path.read_text())
        runs.setdefault(config["attention"]["type"], []).append((config["train"]["seed"], config_path.parent))
    missing = [v for v in VARIANTS if v not in runs]
    if missing:
        sys.exit(f"error: {sweep} has no finished run (best.pt) for {', '.join(missing)}")
    return {v: [run for _, run in sorted(runs[v])] for v in VARIANTS}


def analyse(runs: dict[str, list[Path]], bootstrap: int) -> dict:
    import numpy as np

    from seq2seq.checkpoint import load_checkpoint
    from seq2seq.config import Config
    from seq2seq.evaluate import (
        BUCKETS,
        bucket_ranges,
        evaluate_run,
        gap_interval,
        length_buckets,
        load_test_splits,
        range_label,
    )

    first = runs[VARIANTS[0]][0]
    data = Config.from_dict(load_checkpoint(first / "best.pt")["config"]).data
    splits = load_test_splits(data)
    sets = {**{name: [name] for name in splits}, TOGETHER: list(splits)}
    # hypotheses[variant][seed index][split]
    hypotheses: dict[str, list[dict[str, list[str]]]] = {}
    overall: dict[str, list[dict[str, float]]] = {}
    for variant, dirs in runs.items():
        for run in dirs:
            print(f"evaluating {run}", flush=True)
            report = evaluate_run(run, n_heatmaps=0, bootstrap=200)
            hyps = {s: (run / "eval" / "greedy" / f"{s}.hyp.txt").read_text().splitlines() for s in splits}
            hypotheses.setdefault(variant, []).append(hyps)
            overall.setdefault(variant, []).append({s: r["bleu"] for s, r in report["splits"].items()})

    from sacrebleu.metrics import BLEU

    refs_all = [line for s in splits for line in splits[s][1]]
    for variant, per_run in overall.items():
        for scores, hyps in zip(per_run, hypotheses[variant]):
            scores[TOGETHER] = BLEU().corpus_score([h for s in splits for h in hyps[s]], [refs_all]).score
    result: dict = {"data": f"{data.name}:{data.src}-{data.tgt}", "sets": {}, "runs": {}}
    for variant, dirs in runs.items():
        result["runs"][variant] = [
            {"dir": str(run), "test_bleu": bleu, **_progress(run)} for run, bleu in zip(dirs, overall[variant])
        ]
    for name, members in sets.items():
        src = [line for s in members for line in splits[s][0]]
        refs = [line for s in members for line in splits[s][1]]
        entry: dict = {"n_sentences": len(src), "models": {}, "gaps": {}}
        per_seed: dict[str, list[list[dict]]] = {}
        for variant in VARIANTS:
            per_seed[variant] = [
                length_buckets(
                    src, [h for s in members for h in hyps[s]], refs, bootstrap=bootstrap, rng=np.random.default_rng(0)
                )
                for hyps in hypotheses[variant]
            ]
            entry["models"][variant] = _merge_seeds(per_seed[variant])
        base = [h for s in members for h in hypotheses["none"][0][s]]
        lengths = [len(line.split()) for line in src]
        for variant in VARIANTS[1:]:
            hyps = [h for s in members for h in hypotheses[variant][0][s]]
            gaps = []
            for k, (low, high) in enumerate(bucket_ranges(BUCKETS)):
                rows = [i for i, n in enumerate(lengths) if n >= low and (high is None or n <= high)]
                gap = {"range": range_label(low, high), "n": len(rows), "gap": None, "ci95": None}
                if rows:
                    diffs = [a[k]["bleu"] - b[k]["bleu"] for a, b in zip(per_seed[variant], per_seed["none"])]
                    gap["gap"] = statistics.mean(diffs)
                    if len(diffs) > 1:
                        gap["std"] = statistics.stdev(diffs)
                    pick = [hyps[i] for i in rows], [base[i] for i in rows], [refs[i] for i in rows]
                    gap["ci95"] = gap_interval(*pick, bootstrap, np.random.default_rng(0))
                gaps.append(gap)
            entry["gaps"][variant] = gaps
        result["sets"][name] = entry
    return result


def _progress(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    return {"steps": metrics.get("step"), "valid_bleu": metrics.get("best/valid_bleu")}


def _merge_seeds(seeds: list[list[dict]]) -> list[dict]:
    """The first seed's buckets (with their intervals), with mean and std over seeds when there are several."""
    merged = []
    for buckets in zip(*seeds):
        entry = dict(buckets[0])
        scores = [b["bleu"] for b in buckets if b["bleu"] is not None]
        if len(seeds) > 1 and scores:
            entry["bleu_mean"] = statistics.mean(scores)
            entry["bleu_std"] = statistics.stdev(scores) if len(scores) > 1 else 0.0
        merged.append(entry)
    return merged


def markdown(result: dict, command: str, minutes: float | None) -> str:
    lines = [f"# Length study: {result['data']}", ""]
    if minutes is not None:
        lines += [f"`{command}` — {minutes:.0f} minutes on this machine (training and evaluation).", ""]
    lines += ["| model | steps | best valid BLEU | " + " | ".join(f"test {s}" for s in result["sets"]) + " |"]
    lines += ["|---|---|---|" + "---|" * len(result["sets"])]
    for variant, runs in result["runs"].items():
        run = runs[0]
        tests = [f"{run['test_bleu'][s]:.1f}" for s in result["sets"] if s in run["test_bleu"]]
        valid = f"{run['valid_bleu']:.1f}" if run["valid_bleu"] is not None else "-"
        lines.append(f"| {variant} | {run['steps']} | {valid} | " + " | ".join(tests) + " |")
    for name, entry in result["sets"].items():
        ranges = [b["range"] for b in entry["models"]["none"]]
        lines += ["", f"## {name} ({entry['n_sentences']} sentences): BLEU by source length (words)", ""]
        lines += ["| | " + " | ".join(ranges) + " |", "|---|" + "---|" * len(ranges)]
        counts = [str(b["n"]) for b in entry["models"]["none"]]
        lines.append("| sentences | " + " | ".join(counts) + " |")
        for variant, buckets in entry["models"].items():
            lines.append(f"| {variant} | " + " | ".join(_cell(b) for b in buckets) + " |")
        for variant, gaps in entry["gaps"].items():
            cells = [
                "–" if g["gap"] is None else f"{g['gap']:+.1f} [{g['ci95'][0]:+.1f}, {g['ci95'][1]:+.1f}]" for g in gaps
            ]
            lines.append(f"| {variant} − none | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: BLEU [95 % bootstrap interval] (mean ± std over seeds when there are several); gap rows: "
        "attention minus baseline, with a paired-bootstrap 95 % interval.",
    ]
    return "\n".join(lines) + "\n"


def _cell(bucket: dict) -> str:
    if bucket["bleu"] is None:
        return "–"
    if "bleu_mean" in bucket:
        return f"{bucket['bleu_mean']:.1f} ± {bucket['bleu_std']:.1f}"
    return f"{bucket['bleu']:.1f} [{bucket['ci95'][0]:.1f}, {bucket['ci95'][1]:.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="wmt_newstest", help="data config: wmt_newstest (default) or multi30k")
    parser.add_argument("--budget", default="10m", help="training time per run (train.max_time)")
    parser.add_argument("--seeds", type=int, default=1, help="runs per variant (seeds 1234, 1235, ...)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--runs", type=Path, help="an existing sweep directory: evaluate only")
    parser.add_argument("--docs", action="store_true", help="also write docs/length_study_<data>.{png,md}")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (after --)")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    started = time.monotonic()
    if args.runs is None:
        stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
        sweep = REPO / "outputs" / "multirun" / f"length-study-{args.data}" / stamp
        train(sweep, args.data, args.budget, [1234 + i for i in range(args.seeds)], args.overrides)
    else:
        sweep = args.runs
    result = analyse(collect(sweep), args.bootstrap)
    minutes = (time.monotonic() - started) / 60 if args.runs is None else None
    result["minutes"] = minutes
    result["budget"] = args.budget
    command = f"make length-study DATA={args.data} BUDGET={args.budget} SEEDS={args.seeds}"

    from seq2seq.plots import close, length_study_figure

    panels = {name: entry["models"] for name, entry in result["sets"].items()}
    fig = length_study_figure(panels, f"BLEU by source length, {result['data']}, {args.budget} of training per model")
    fig.savefig(sweep / "length_study.png", dpi=110)
    close(fig)
    (sweep / "length_study.json").write_text(json.dumps(result, indent=2) + "\n")
    (sweep / "length_study.md").write_text(markdown(result, command, minutes))
    print((sweep / "length_study.md").read_text())
    if args.docs:
        docs = REPO / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copy(sweep / "length_study.png", docs / f"length_study_{args.data}.png")
        shutil.copy(sweep / "length_study.md", docs / f"length_study_{args.data}.md")
    print(f"wrote {sweep / 'length_study.md'} and .png/.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
