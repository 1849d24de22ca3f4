"""``make length-study``: what attention buys on long inputs (Bahdanau et al. 2015, Fig. 2, in spirit).

    SEQ2SEQ_DATA_DIR=../shared/corpora python scripts/length_study.py [--steps 2000] [--seeds 3]

Trains ``none``, ``luong`` and ``bahdanau`` with the same data, model sizes and number of
optimiser updates (``train.max_steps``), in two training regimes:

- ``natural``: the corpus as it is (Multi30k captions: 12 words on average);
- ``long``: a quarter of the training pairs joined with 1 ... 7 random others
  (``data.long_examples``), so every model has seen inputs as long as the test's long ones.

Each run's ``best.pt`` is evaluated greedily (``seq2seq.evaluate --concat 8``) on the natural test
splits and on long inputs made of k = 2 ... 8 consecutive test sentences. The report gives, per
regime: BLEU and the output/reference length ratio for every k; BLEU by source length (1-10, ...,
71-80, 81+ words) over all those inputs with 95 % bootstrap intervals; each attention variant's gap
to ``none`` with a paired-bootstrap interval; the natural test splits by length. With ``--seeds N``
the figures are means over seeds (bands: the seeds' mean bootstrap interval).

``--variants none,bahdanau-4heads,luong-4heads`` (``make length-study VARIANTS=...``) picks the
models: a wiring, optionally ``-<N>heads`` for multi-head attention (``attention.heads=N``), or
``transformer``, optionally ``-<positions>`` (``model=transformer model.positions=...``: sinusoidal,
learned, relative, rope); ``none`` is always one of them, the baseline of every gap.

Runs live in ``outputs/length-study/<data>-<steps>steps/<regime>/<variant>-seed<seed>/``.
Running the same command again skips finished runs, resumes interrupted ones (the trainer
resumes exactly) and reuses finished evaluations; ``--runs DIR`` re-analyses a study without
training. Writes ``length_study.{json,md,png}`` into that directory (``--docs``: also into
``docs/`` as ``length_study_<data>.*``) and ``explorer_<regime>.html``: the three models' outputs
and attention side by side on the natural and the joined test inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from seq2seq.errors import Seq2SeqError
from seq2seq.overrides import compose

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VARIANTS = ("none", "luong", "bahdanau")
VARIANTS: tuple[str, ...] = DEFAULT_VARIANTS  # --variants sets the study's, "none" first
VARIANT = re.compile(r"(none|luong|bahdanau)(?:-(\d+)heads)?|(transformer)(?:-(sinusoidal|learned|relative|rope))?")
# a quarter of the training pairs become joins of 2-8 captions (up to ~100 words; the filter allows 120)
REGIMES = {
    "natural": [],
    "long": ["data.long_examples.fraction=0.25", "data.long_examples.max_k=8", "data.filter.max_len=120"],
}
DEFAULTS = ["train.valid_max_sentences=1000"]  # validation picks best.pt; 1,000 sentences keep it cheap
EDGES = (10, 20, 30, 40, 50, 60, 70, 80)
POOLED = "long inputs"  # every test split at every k, pooled and bucketed by source length


# -- training --------------------------------------------------------------------------------


def run_dir(root: Path, regime: str, variant: str, seed: int) -> Path:
    return root / regime / f"{variant}-seed{seed}"


def variant_overrides(variant: str) -> list[str]:
    """``bahdanau`` -> ``attention=bahdanau``; ``luong-4heads`` -> ``attention=luong attention.heads=4``;
    ``transformer`` -> ``model=transformer``; ``transformer-rope`` -> ``model=transformer model.positions=rope``."""
    wiring, heads, transformer, positions = VARIANT.fullmatch(variant).groups()
    if transformer:
        return ["model=transformer", *([f"model.positions={positions}"] if positions else [])]
    return [f"attention={wiring}", *([f"attention.heads={heads}"] if heads else [])]


def variants_on_disk(root: Path) -> str | None:
    """The models a study directory holds in every regime it has runs for (``--runs`` without
    ``--variants``), ``none`` first; None where it holds none."""
    held = [
        {run.name.rsplit("-seed", 1)[0] for run in regime.glob("*-seed*") if run.is_dir()}
        for regime in sorted(root.iterdir() if root.is_dir() else [])
        if regime.is_dir() and any(regime.glob("*-seed*"))
    ]
    common = set.intersection(*held) if held else set()
    families = ("none", "luong", "bahdanau", "transformer")  # the arc's order, as the default lists them
    order = {v: (next((i for i, f in enumerate(families) if v.startswith(f)), len(families)), v) for v in common}
    return ",".join(sorted(common, key=order.get)) or None


def parse_variants(text: str) -> tuple[str, ...]:
    """``--variants``: comma-separated, each a wiring with an optional ``-<N>heads``, or ``transformer`` with an
    optional ``-<positions>``; none first."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if not VARIANT.fullmatch(v) or v.startswith("none-")]
    if bad:
        raise ValueError(
            f"{', '.join(bad)}: a variant is none, luong or bahdanau, optionally with -<N>heads, "
            "or transformer, optionally with -sinusoidal, -learned, -relative or -rope"
        )
    if len(set(names)) != len(names):
        raise ValueError("a variant is named twice")
    return ("none", *[v for v in names if v != "none"])


def overrides_for(args, regime: str, variant: str, seed: int) -> list[str]:
    return [
        f"data={args.data}",
        *variant_overrides(variant),
        f"train.seed={seed}",
        f"train.max_steps={args.steps}",
        *DEFAULTS,
        *REGIMES[regime],
        *([f"data.long_examples.seed={seed}"] if regime == "long" else []),
        *args.overrides,
    ]


def check_inputs(args) -> None:
    """Everything that can be wrong with the request, before anything trains: configs, test splits, joins."""
    import datasets

    from seq2seq.data.corpora import filter_pairs, load_split
    from seq2seq.data.longinputs import long_examples
    from seq2seq.evaluate import load_test_splits

    datasets.disable_progress_bars()  # an error below stays one line

    configs = {r: compose(overrides_for(args, r, "bahdanau", args.seed)) for r in args.regimes}  # typos: ConfigError
    for regime in args.regimes:  # every model's settings, before the first one trains
        for variant in VARIANTS:
            compose(overrides_for(args, regime, variant, args.seed))
    data = next(iter(configs.values())).data
    splits = load_test_splits(data)
    shortest = min(len(src) for src, _ in splits.values())
    if args.concat > shortest:
        raise Seq2SeqError(f"--concat {args.concat} needs test splits of at least {args.concat} sentences")
    if "long" in configs:
        long = configs["long"].data
        pairs, _ = filter_pairs(load_split(long, long.train), long.filter)
        le = long.long_examples
        long_examples(pairs["src"], pairs["tgt"], le.fraction, le.max_k, le.seed, long.filter.max_len)


def train_all(root: Path, args, timings: dict) -> None:
    for seed in args.seed_list:
        for regime in args.regimes:
            for variant in VARIANTS:
                out = run_dir(root, regime, variant, seed)
                if finished(out):
                    print(f"finished: {out}", flush=True)
                    continue
                resume = ["train.resume=true"] if (out / "last.pt").exists() else []
                command = [sys.executable, "train.py", *overrides_for(args, regime, variant, seed), *resume]
                command.append(f"hydra.run.dir={out}")
                print(("resuming" if resume else "training"), out, flush=True)
                start = time.monotonic()
                done = subprocess.run(command, cwd=REPO)
                key = str(out.relative_to(root))
                timings["train"][key] = timings["train"].get(key, 0.0) + time.monotonic() - start
                save_timings(root, timings)
                if done.returncode != 0:
                    sys.exit(f"error: training {out} failed (exit {done.returncode}); run the same command to resume")


def finished(run: Path) -> bool:
    """The run reached its budget: a run stopped by a signal (or a time limit) has metrics.json too, and resumes."""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    stop = str(metrics.get("stop", ""))
    return (run / "best.pt").exists() and not stop.startswith("signal") and stop != "max_time"


def load_timings(root: Path) -> dict:
    path = root / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {"train": {}, "evaluate": {}}


def save_timings(root: Path, timings: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")


# -- evaluation ------------------------------------------------------------------------------


def collect(root: Path, seeds: list[int] | None = None) -> dict[str, dict[str, list[tuple[int, Path]]]]:
    """``{regime: {variant: [(seed, run dir), ...]}}`` of the finished runs under ``root``."""
    runs: dict[str, dict[str, list[tuple[int, Path]]]] = {}
    for metrics in sorted(root.glob("*/*-seed*/metrics.json")):
        run = metrics.parent
        variant, seed = run.name.rsplit("-seed", 1)
        if variant in VARIANTS and finished(run) and (seeds is None or int(seed) in seeds):
            runs.setdefault(run.parent.name, {}).setdefault(variant, []).append((int(seed), run))
    if not runs:
        raise Seq2SeqError(
            f"{root} holds no finished run (best.pt, and metrics.json of a run that reached its budget); train first"
        )
    for regime, by_variant in runs.items():
        missing = [v for v in VARIANTS if v not in by_variant]
        if missing:
            raise Seq2SeqError(f"{root / regime} has no finished run for {', '.join(missing)}")
    order = [*REGIMES, *sorted(set(runs) - set(REGIMES))]
    return {r: {v: runs[r][v] for v in VARIANTS} for r in order if r in runs}


def evaluated(run: Path, args, timings: dict) -> dict:
    """The run's greedy report with long inputs, reused when it is of this checkpoint and these settings."""
    from seq2seq.evaluate import evaluate_run
    from seq2seq.training.checkpoint import load_checkpoint

    path = run / "eval" / "greedy" / "report.json"
    step = int(load_checkpoint(run / "best.pt").get("progress", {}).get("step", 0))
    if path.exists() and (run / "eval" / "greedy" / "explorer.html").exists():
        report = json.loads(path.read_text())
        wanted = {f"+k{k}" for k in range(2, args.concat + 1)}
        have = {name[name.index("+k") :] for name in report["splits"] if "+k" in name}
        first = next(iter(report["splits"].values()))["buckets"]
        if report.get("step") == step and wanted <= have and len(first) == len(EDGES) + 1:
            return report
    print(f"evaluating {run}", flush=True)
    start = time.monotonic()
    report = evaluate_run(run, buckets=EDGES, n_heatmaps=0, bootstrap=args.bootstrap, concat=args.concat)
    timings["evaluate"][f"{run.parent.name}/{run.name}"] = time.monotonic() - start
    return report


# -- analysis --------------------------------------------------------------------------------


def analyse(runs: dict, args, timings: dict, earlier: dict | None = None) -> dict:
    """Every seed's figures (``runs`` on disk, plus the seeds of ``earlier`` they lack), then their means."""
    from seq2seq.config import Config
    from seq2seq.evaluate import load_test_splits, with_concatenations
    from seq2seq.training.checkpoint import load_checkpoint

    first_run = next(iter(next(iter(runs.values())).values()))[0][1]
    config = Config.from_dict(load_checkpoint(first_run / "best.pt")["config"])
    data = config.data
    sets = with_concatenations(load_test_splits(data), args.concat)
    steps = config.train.max_steps  # the runs' budget (with --runs, --steps need not be given)
    result: dict = {"data": f"{data.name}:{data.src}-{data.tgt}", "steps": steps, "regimes": {}}
    if earlier is not None:
        check_mergeable(earlier, result, args)
    names = [*runs, *[r for r in (earlier or {}).get("regimes", {}) if r not in runs]]
    for regime in [*[r for r in REGIMES if r in names], *[r for r in names if r not in REGIMES]]:
        records = {v: [] for v in VARIANTS}
        for seed, seed_runs in complete_seeds(runs.get(regime, {}), regime):
            for variant, record in seed_records(seed, seed_runs, sets, data, args, timings).items():
                records[variant].append(record)
        for variant, rows in earlier_records(earlier, regime, {r["seed"] for r in records["none"]}).items():
            records[variant] += rows
        entry: dict = {"overrides": REGIMES.get(regime, []), "runs": records}
        entry.update(aggregate(records))
        result["regimes"][regime] = entry
    return result


def complete_seeds(by_variant: dict, regime: str) -> list[tuple[int, dict[str, Path]]]:
    """``[(seed, {variant: run})]`` for the seeds every model finished (a gap pairs a model with its seed's baseline)."""
    seeds = sorted({seed for seeded in by_variant.values() for seed, _ in seeded})
    out = []
    for seed in seeds:
        seed_runs = {v: dict(by_variant.get(v, [])).get(seed) for v in VARIANTS}
        if None in seed_runs.values():
            print(f"{regime} seed {seed}: not every model has finished; left out", flush=True)
            continue
        out.append((seed, seed_runs))
    return out


def seed_records(seed: int, seed_runs: dict[str, Path], sets: dict, data, args, timings: dict) -> dict[str, dict]:
    """One seed's record per model: its scores, by k, by length and (attention) its gap to the baseline."""
    from sacrebleu.metrics import BLEU

    from seq2seq.evaluate import CONCAT_MARK, length_buckets, load_test_splits

    natural = list(load_test_splits(data))
    k_of = {name: int(name.split(CONCAT_MARK)[1]) if CONCAT_MARK in name else 1 for name in sets}
    pooled_src = [line for name in sets for line in sets[name][0]]
    pooled_refs = [line for name in sets for line in sets[name][1]]
    records, pooled_hyps = {}, {}
    for variant, run in seed_runs.items():
        report = evaluated(run, args, timings)
        hyps = {name: (run / "eval" / "greedy" / f"{name}.hyp.txt").read_text().splitlines() for name in sets}
        pooled_hyps[variant] = [h for name in sets for h in hyps[name]]
        metrics = json.loads((run / "metrics.json").read_text())
        by_k = {}
        for k in range(1, args.concat + 1):
            members = [name for name in sets if k_of[name] == k]
            refs = [[r for name in members for r in sets[name][1]]]
            score = BLEU().corpus_score([h for name in members for h in hyps[name]], refs)
            by_k[str(k)] = {
                "n": len(refs[0]),
                "bleu": score.score,
                "length_ratio": score.sys_len / max(score.ref_len, 1),
            }
        records[variant] = {
            "seed": seed,
            "dir": str(run),
            "steps": metrics.get("step"),
            "valid_bleu": metrics.get("best/valid_bleu"),
            "test_bleu": {s: report["splits"][s]["bleu"] for s in natural},
            "by_k": by_k,
            "train_seconds": train_seconds(run),
            POOLED: length_buckets(pooled_src, pooled_hyps[variant], pooled_refs, EDGES, args.bootstrap, rng(0)),
            "natural": {s: report["splits"][s]["buckets"] for s in natural},
        }
    lengths = [len(s.split()) for s in pooled_src]
    for variant in VARIANTS[1:]:
        records[variant]["gaps"] = seed_gaps(pooled_hyps[variant], pooled_hyps["none"], pooled_refs, lengths, args)
    return records


def seed_gaps(hyps: list[str], base: list[str], refs: list[str], lengths: list[int], args) -> list[dict]:
    """Per length bucket: BLEU(model) - BLEU(baseline of the same seed) and its paired-bootstrap interval."""
    from sacrebleu.metrics import BLEU

    from seq2seq.evaluate import bucket_ranges, range_label
    from seq2seq.metrics import gap_interval

    gaps = []
    for low, high in bucket_ranges(EDGES):
        rows = [i for i, n in enumerate(lengths) if n >= low and (high is None or n <= high)]
        gap = {"range": range_label(low, high), "n": len(rows), "gap": None, "ci95": None}
        if rows:
            pick = [hyps[i] for i in rows], [base[i] for i in rows], [refs[i] for i in rows]
            points = [BLEU().corpus_score(list(side), [pick[2]]).score for side in pick[:2]]
            gap.update(gap=points[0] - points[1], ci95=gap_interval(*pick, args.bootstrap, rng(0)))
        gaps.append(gap)
    return gaps


def aggregate(records: dict[str, list[dict]]) -> dict:
    """The means over seeds of every per-seed figure: by k, by length, the natural splits, the gaps."""
    out: dict = {"seeds": [r["seed"] for r in records["none"]], "by_k": {}, POOLED: {}, "natural": {}, "gaps": {}}
    for variant, rows in records.items():
        out["by_k"][variant] = merge_k([r["by_k"] for r in rows])
        out[POOLED][variant] = merge_seeds([r[POOLED] for r in rows])
        for split in rows[0]["natural"]:
            out["natural"].setdefault(split, {})[variant] = merge_seeds([r["natural"][split] for r in rows])
    for variant in VARIANTS[1:]:
        merged = []
        for gaps in zip(*(r["gaps"] for r in records[variant])):
            gap = {"range": gaps[0]["range"], "n": gaps[0]["n"], "gap": None, "ci95": None, "seeds": 0}
            scored = [g for g in gaps if g["gap"] is not None]
            if scored:  # the mean gap, and the mean of the seeds' paired intervals
                gap.update(gap=statistics.mean(g["gap"] for g in scored), seeds=len(scored))
                gap["ci95"] = [statistics.mean(g["ci95"][i] for g in scored) for i in (0, 1)]
            merged.append(gap)
        out["gaps"][variant] = merged
    return out


def read_earlier(path: Path) -> dict:
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise Seq2SeqError(f"--merge {path}: cannot read a study result ({error})") from None
    if not isinstance(earlier, dict) or not isinstance(earlier.get("regimes"), dict):
        raise Seq2SeqError(f"--merge {path}: not a length_study.json (no 'regimes')")
    return earlier


def check_mergeable(earlier: dict, result: dict, args) -> None:
    """Seeds merge only into a study of the same corpus, budget, regimes, k and buckets."""
    for key in ("data", "steps"):
        if earlier.get(key) != result[key]:
            raise Seq2SeqError(f"--merge: the earlier study has {key} {earlier.get(key)!r}, this one {result[key]!r}")
    for regime, entry in earlier["regimes"].items():
        if entry.get("overrides") != REGIMES.get(regime):
            raise Seq2SeqError(f"--merge: the earlier study's {regime} regime was trained with other overrides")
        for variant in VARIANTS:
            for record in entry["runs"].get(variant, []):
                if POOLED not in record or (variant != "none" and "gaps" not in record):
                    raise Seq2SeqError(
                        f"--merge: the earlier study keeps no per-seed buckets for {regime}/{variant} "
                        f"seed {record.get('seed')}; only a result written by this script can be merged"
                    )
                if len(record["by_k"]) != args.concat or len(record[POOLED]) != len(EDGES) + 1:
                    raise Seq2SeqError(f"--merge: the earlier study used other k or length buckets ({regime})")


def earlier_records(earlier: dict | None, regime: str, have: set[int]) -> dict[str, list[dict]]:
    """The earlier study's records of ``regime`` for the seeds not on disk (every model of a seed, or none)."""
    entry = (earlier or {}).get("regimes", {}).get(regime)
    if not entry:
        return {}
    seeds = [
        r["seed"]
        for r in entry["runs"].get("none", [])
        if r["seed"] not in have
        and all(any(x["seed"] == r["seed"] for x in entry["runs"].get(v, [])) for v in VARIANTS)
    ]
    return {v: [{**r, "merged": True} for r in entry["runs"][v] if r["seed"] in seeds] for v in VARIANTS}


def train_seconds(run: Path) -> float:
    """Wall time the run spent in its training processes (across resumes), from its last checkpoint."""
    from seq2seq.training.checkpoint import load_checkpoint

    return float(load_checkpoint(run / "last.pt").get("progress", {}).get("train_seconds", 0.0))


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def merge_seeds(seeds: list[list[dict]]) -> list[dict]:
    """Buckets averaged over seeds: mean BLEU, its std, the mean bootstrap interval, the mean length ratio."""
    merged = []
    for buckets in zip(*seeds):
        entry = {"range": buckets[0]["range"], "n": buckets[0]["n"], "bleu": None, "ci95": None}
        entry["length_ratio"] = None
        scored = [b for b in buckets if b["bleu"] is not None]
        if scored:
            entry["bleu"] = statistics.mean(b["bleu"] for b in scored)
            entry["std"] = statistics.stdev(b["bleu"] for b in scored) if len(scored) > 1 else 0.0
            entry["ci95"] = [statistics.mean(b["ci95"][i] for b in scored) for i in (0, 1)]
            entry["length_ratio"] = statistics.mean(b["length_ratio"] for b in scored)
        entry["seeds"] = len(scored)
        merged.append(entry)
    return merged


def merge_k(per_seed: list[dict]) -> list[dict]:
    out = []
    for k in per_seed[0]:
        scores = [s[k]["bleu"] for s in per_seed]
        out.append(
            {
                "k": int(k),
                "n": per_seed[0][k]["n"],
                "bleu": statistics.mean(scores),
                "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "length_ratio": statistics.mean(s[k]["length_ratio"] for s in per_seed),
            }
        )
    return out


# -- the report ------------------------------------------------------------------------------


def markdown(result: dict, command: str) -> str:
    lines = [f"# Length study: {result['data']}, {result['steps']:,} updates per model", ""]
    lines += [f"`{command}` on {result['machine']}; {result['wall']}.", ""]
    seeds = "; ".join(
        f"{regime}: {len(e['seeds'])} ({', '.join(map(str, e['seeds']))})" for regime, e in result["regimes"].items()
    )
    merged = sorted(
        {f"{r} seed {x['seed']}" for r, e in result["regimes"].items() for x in e["runs"]["none"] if x.get("merged")}
    )
    lines += [
        f"Seeds per regime — {seeds}. Figures are means over a regime's seeds; intervals are 95 % bootstrap intervals."
    ]
    if merged:
        lines += [f"Merged from an earlier result of the same settings (runs not on this disk): {', '.join(merged)}."]
    lines += [""]
    natural = list(next(iter(result["regimes"].values()))["natural"])
    lines += ["## All lengths", ""]
    lines += ["| regime | model | updates | best valid BLEU | " + " | ".join(natural) + " | long inputs (all k) |"]
    lines += ["|---|---|---:|---:|" + "---:|" * (len(natural) + 1)]
    for regime, entry in result["regimes"].items():
        for variant, runs in entry["runs"].items():
            valid = statistics.mean(r["valid_bleu"] for r in runs)
            tests = [statistics.mean(r["test_bleu"][s] for r in runs) for s in natural]
            pooled = statistics.mean(sum(k["bleu"] * k["n"] for k in r["by_k"].values()) for r in runs)
            pooled /= sum(k["n"] for k in runs[0]["by_k"].values())
            cells = " | ".join(f"{t:.1f}" for t in tests)
            lines.append(f"| {regime} | {variant} | {runs[0]['steps']} | {valid:.1f} | {cells} | {pooled:.1f}* |")
    lines += ["", "\\* input-weighted mean of the per-k BLEU below.", ""]
    for regime, entry in result["regimes"].items():
        ks = entry["by_k"]["none"]
        lines += [f"## {regime} training: BLEU by k (inputs of k consecutive test sentences)", ""]
        lines += ["| | " + " | ".join(f"k={k['k']}" for k in ks) + " |", "|---|" + "---:|" * len(ks)]
        lines.append("| inputs | " + " | ".join(str(k["n"]) for k in ks) + " |")
        for variant, row in entry["by_k"].items():
            lines.append(f"| {variant} BLEU | " + " | ".join(_mean(k) for k in row) + " |")
        for variant, row in entry["by_k"].items():
            lines.append(
                f"| {variant} output/ref length | " + " | ".join(f"{k['length_ratio']:.2f}" for k in row) + " |"
            )
        buckets = entry[POOLED]["none"]
        lines += ["", f"## {regime} training: BLEU by source length (words), all long inputs", ""]
        lines += ["| | " + " | ".join(b["range"] for b in buckets) + " |", "|---|" + "---:|" * len(buckets)]
        lines.append("| inputs | " + " | ".join(str(b["n"]) for b in buckets) + " |")
        for variant, row in entry[POOLED].items():
            lines.append(f"| {variant} | " + " | ".join(_cell(b) for b in row) + " |")
        for variant, gaps in entry["gaps"].items():
            cells = [
                "–" if g["gap"] is None else f"{g['gap']:+.1f} [{g['ci95'][0]:+.1f}, {g['ci95'][1]:+.1f}]" for g in gaps
            ]
            lines.append(f"| {variant} − none | " + " | ".join(cells) + " |")
        for variant, row in entry[POOLED].items():
            ratios = ["–" if b["length_ratio"] is None else f"{b['length_ratio']:.2f}" for b in row]
            lines.append(f"| {variant} output/ref length | " + " | ".join(ratios) + " |")
        for split, models in entry["natural"].items():
            row0 = next(iter(models.values()))
            used = [i for i, b in enumerate(row0) if b["n"]]
            lines += ["", f"### {regime} training: natural {split} by source length", ""]
            lines += ["| | " + " | ".join(row0[i]["range"] for i in used) + " |", "|---|" + "---:|" * len(used)]
            lines.append("| sentences | " + " | ".join(str(row0[i]["n"]) for i in used) + " |")
            for variant, row in models.items():
                lines.append(f"| {variant} | " + " | ".join(_cell(row[i]) for i in used) + " |")
        lines.append("")
    lines += [
        "Cells: BLEU [95 % bootstrap interval], means over seeds (the interval: the seeds' mean bounds); gap rows: "
        "attention minus the baseline of the same seed on the same inputs, with a paired-bootstrap 95 % interval, "
        "averaged over seeds. Output/ref length below 1 is output that stops early.",
    ]
    return "\n".join(lines) + "\n"


def _mean(k: dict) -> str:
    return f"{k['bleu']:.1f}" + (f" ± {k['std']:.1f}" if k.get("std") else "")


def _cell(b: dict) -> str:
    if b["bleu"] is None:
        return "–"
    spread = f" ± {b['std']:.1f}" if b.get("std") else ""
    return f"{b['bleu']:.1f}{spread} [{b['ci95'][0]:.1f}, {b['ci95'][1]:.1f}]"


def machine() -> str:
    import torch

    from seq2seq.hardware import describe_device, native_bf16

    cpu = torch.device("cpu")
    precision = "bf16 autocast" if native_bf16(cpu) else "float32"
    return (
        f"{describe_device(cpu)}, {os.cpu_count()} cores, {precision}, torch {torch.__version__}, {platform.system()}"
    )


def main() -> int:
    global VARIANTS  # --variants: every function of the study reads the models from here
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="multi30k", help="data config: multi30k (default) or wmt_newstest")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser updates per model (train.max_steps)")
    parser.add_argument("--seeds", type=int, default=1, help="runs per model and regime (seeds 1234, 1235, ...)")
    parser.add_argument("--seed", type=int, default=1234, help="the first seed")
    parser.add_argument("--regimes", default="natural,long", help="natural, long or both (comma-separated)")
    parser.add_argument("--concat", type=int, default=8, help="long inputs of k = 1 ... this many test sentences")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--runs", type=Path, help="an existing study directory: analyse only, train nothing")
    parser.add_argument("--out", type=Path, help="study directory (default outputs/length-study/<data>-<steps>steps)")
    parser.add_argument(
        "--merge", type=Path, help="an earlier length_study.json: add its seeds that are not on disk (same settings)"
    )
    parser.add_argument(
        "--variants",
        help="models, comma-separated: none, luong, bahdanau, each optionally -<N>heads (e.g. bahdanau-4heads), "
        "transformer, optionally -<positions> (transformer-rope); "
        "none is always trained, the baseline of every gap (default: none,luong,bahdanau; with --runs, the "
        "models the directory holds in every regime)",
    )
    parser.add_argument("--docs", action="store_true", help="also write docs/length_study_<data>.{png,md,json}")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (after --)")
    args = parser.parse_args()
    if args.variants is None:  # the default models, or those a study directory to re-analyse holds
        args.variants = (args.runs and variants_on_disk(args.runs)) or ",".join(DEFAULT_VARIANTS)
    try:
        VARIANTS = parse_variants(args.variants)
    except ValueError as error:
        parser.error(f"--variants {args.variants!r}: {error}")
    args.regimes = [r for r in args.regimes.split(",") if r]
    if not args.regimes or any(r not in REGIMES for r in args.regimes):
        parser.error(f"--regimes {','.join(args.regimes)!r}: choose from {', '.join(REGIMES)}")
    if args.steps < 1:
        parser.error("--steps must be at least 1 (optimiser updates per model)")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if not 1 <= args.concat <= 16:
        parser.error(f"--concat {args.concat} is out of range: expected 1 to 16 sentences per input")
    if args.bootstrap < 1:
        parser.error("--bootstrap must be at least 1")
    args.seed_list = [args.seed + i for i in range(args.seeds)]
    root = args.runs or args.out or REPO / "outputs" / "length-study" / f"{args.data}-{args.steps}steps"
    try:
        if args.runs is None:
            check_inputs(args)
            timings = load_timings(root)
            train_all(root, args, timings)
        else:
            timings = load_timings(root)
        earlier = read_earlier(args.merge) if args.merge else None
        result = analyse(collect(root, None if args.runs else args.seed_list), args, timings, earlier)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    save_timings(root, timings)
    train_s = sum(r["train_seconds"] for e in result["regimes"].values() for rs in e["runs"].values() for r in rs)
    eval_s = sum(timings["evaluate"].values())
    result["machine"] = machine()
    if earlier is not None:  # the merged seeds' evaluation time, and the machine that measured them
        merged = [
            f"{regime}/{variant}-seed{r['seed']}"
            for regime, e in result["regimes"].items()
            for variant, rs in e["runs"].items()
            for r in rs
            if r.get("merged")
        ]
        earlier_eval = earlier.get("timings", {}).get("evaluate", {})
        eval_s += sum(t for key, t in earlier_eval.items() if any(key.endswith(m) for m in merged))
        if merged and earlier.get("machine") not in (None, result["machine"]):
            result["machine"] += f" (merged seeds: {earlier['machine']})"
    result["wall"] = f"{train_s / 60:.0f} minutes of training and {eval_s / 60:.0f} of evaluation"
    result["timings"] = timings
    command = f"make length-study DATA={args.data} STEPS={args.steps} SEEDS={args.seeds}"
    if args.runs is not None:
        command = f"python scripts/length_study.py --runs {args.runs} --concat {args.concat}"
        command += f" --variants {','.join(VARIANTS)}" if VARIANTS != DEFAULT_VARIANTS else ""
    elif args.regimes != list(REGIMES) or args.concat != 8 or VARIANTS != DEFAULT_VARIANTS:
        command = f"python scripts/length_study.py --data {args.data} --steps {args.steps} --seeds {args.seeds}"
        command += f" --regimes {','.join(args.regimes)} --concat {args.concat} --variants {','.join(VARIANTS)}"
    if args.merge:
        command += f" --merge {args.merge}"
    result["command"] = command

    from seq2seq.plots import close, length_study_figure

    panels = {f"{regime} training": entry[POOLED] for regime, entry in result["regimes"].items()}
    natural = {f"{regime} training": entry["natural"] for regime, entry in result["regimes"].items()}
    title = f"BLEU by source length, {result['data']}, {result['steps']:,} updates per model"
    fig = length_study_figure(panels, natural, title)
    fig.savefig(root / "length_study.png", dpi=110)
    close(fig)
    (root / "length_study.json").write_text(json.dumps(result, indent=2) + "\n")
    (root / "length_study.md").write_text(markdown(result, command))
    print((root / "length_study.md").read_text())
    from seq2seq.evaluate import compare_runs

    for regime, entry in result["regimes"].items():  # the long inputs, models side by side
        runs = [Path(entry["runs"][v][0]["dir"]) for v in VARIANTS]
        if not all((run / "best.pt").exists() for run in runs):
            print(f"no explorer_{regime}.html: its first seed's runs are not on this disk (merged)")
            continue
        page = compare_runs(runs, root / f"explorer_{regime}.html", bootstrap=args.bootstrap, concat=args.concat)
        print(f"wrote {page}")
    if args.docs:
        for suffix in ("png", "md", "json"):
            shutil.copy(root / f"length_study.{suffix}", REPO / "docs" / f"length_study_{args.data}.{suffix}")
    print(f"wrote {root / 'length_study.md'} and .png/.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
