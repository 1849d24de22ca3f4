"""Score a run's best checkpoint on its test splits: ``python -m seq2seq.evaluate --run RUN [--beam K]``.

For every split in the run's ``data.test`` it decodes the sources (greedy, or beam search with
``--beam K``) and writes into ``RUN/eval/<mode>/`` (``mode`` is ``greedy`` or ``beamK``):

- ``report.json``: sacreBLEU BLEU and chrF with their signatures, decoding speed, and BLEU per
  source-length bucket (1-10, ..., 41-50, 51+ words) with a 95% bootstrap interval (Koehn 2004:
  resample the bucket's sentence pairs with replacement, corpus BLEU of each resample);
- ``report.md``: the same as Markdown tables; ``length.png``: BLEU against source length, one line
  per split (cf. Bahdanau et al. 2015, Fig. 2); ``<split>.hyp.txt``: the hypotheses;
- ``attention_<split>_<i>.png``: heatmaps of the first sentences (attention models only);
- ``explorer.html``: every sentence with its output, chrF and attention in one page
  (:mod:`seq2seq.explorer`); ``--compare RUN_A RUN_B ...`` writes one page with several runs;
- with ``--concat K``, each split's inputs of k = 2 ... K consecutive sentences as ``<split>+k<k>``
  (:mod:`seq2seq.data.longinputs`), bucketed up to 81+ words;
- ``alignment`` in the report: AER of the attention against gold word alignments, when the corpus
  root holds ``alignments-<src>-<tgt>/`` (see :mod:`seq2seq.alignment`).

The same numbers go to TensorBoard: ``test/<split>/bleu``, ``test/<split>/chrf``,
``test/<split>/bleu_len_<range>``, the figure ``test/length`` and heatmaps
``test/attention/<split>/<i>``, at the checkpoint's training step. Greedy results are logged into
the run directory itself; beam results into ``RUN/eval/beamK`` (a run of their own in TensorBoard,
so greedy and beam lines can be compared on the same tags).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU

from seq2seq.alignment import alignment_error_rate, diagonal_error_rate, read_gold
from seq2seq.config import DataConfig
from seq2seq.data.corpora import corpus_root, load_split
from seq2seq.data.longinputs import MAX_K, join_consecutive
from seq2seq.errors import DataError, RunDirError, Seq2SeqError
from seq2seq.explorer import NO_ATTENTION, ModelView, Record, merge_models, page_data, read_page_data, write_page
from seq2seq.hardware import PRECISIONS
from seq2seq.history import page_history
from seq2seq.metrics import bleu_interval, corpus_scores
from seq2seq.plots import attention_figure, length_figure
from seq2seq.tracking import Tracker
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.translator import Translator, explorer_records

log = logging.getLogger("seq2seq")

BUCKETS = (10, 20, 30, 40, 50)
LONG_BUCKETS = (10, 20, 30, 40, 50, 60, 70, 80)  # with --concat: inputs of up to ~90 words and beyond

__all__ = ["alignment_error_rate", "evaluate_run", "find_latest_run", "length_buckets", "main"]


# -- BLEU by source length -------------------------------------------------------------------


def bucket_ranges(edges: Sequence[int]) -> list[tuple[int, int | None]]:
    """``(10, 20)`` -> ``[(1, 10), (11, 20), (21, None)]``: inclusive word-count ranges, the last open."""
    lows = [1, *(e + 1 for e in edges)]
    return list(zip(lows, [*edges, None]))


def range_label(low: int, high: int | None) -> str:
    return f"{low}-{high}" if high is not None else f"{low}+"


def length_buckets(
    src_texts: Sequence[str],
    hyps: Sequence[str],
    refs: Sequence[str],
    edges: Sequence[int] = BUCKETS,
    bootstrap: int = 1000,
    rng: np.random.Generator | None = None,
) -> list[dict[str, Any]]:
    """BLEU per source-length bucket (whitespace words), each ``{"range", "n", "bleu", "ci95", "length_ratio"}``.

    ``length_ratio`` is the bucket's hypothesis length over its reference length (sacreBLEU's
    tokens): a model that stops early on long inputs shows it there, before the brevity penalty.
    """
    rng = rng if rng is not None else np.random.default_rng(12345)
    lengths = [len(s.split()) for s in src_texts]
    out = []
    for low, high in bucket_ranges(edges):
        rows = [i for i, n in enumerate(lengths) if n >= low and (high is None or n <= high)]
        entry: dict[str, Any] = {
            "range": range_label(low, high),
            "n": len(rows),
            "bleu": None,
            "ci95": None,
            "length_ratio": None,
        }
        if rows:
            bucket_hyps, bucket_refs = [hyps[i] for i in rows], [refs[i] for i in rows]
            score = BLEU().corpus_score(bucket_hyps, [bucket_refs])
            entry["bleu"] = score.score
            entry["length_ratio"] = score.sys_len / max(score.ref_len, 1)  # < 1: output too short (brevity)
            entry["ci95"] = bleu_interval(bucket_hyps, bucket_refs, bootstrap, rng)
        out.append(entry)
    return out


# -- one split -------------------------------------------------------------------------------


@dataclasses.dataclass
class EvalSettings:
    beam: int = 1
    length_penalty: float = 1.0
    buckets: tuple[int, ...] = BUCKETS
    n_heatmaps: int = 4
    bootstrap: int = 1000
    seed: int = 12345
    explorer: bool = True  # keep attention and pieces for explorer.html

    @property
    def mode(self) -> str:
        return "greedy" if self.beam == 1 else f"beam{self.beam}"


def evaluate_split(
    translator: Translator, src: list[str], refs: list[str], settings: EvalSettings, explore: bool = False
) -> dict[str, Any]:
    """Decode one split and score it; the result also carries the hypotheses under ``"hypotheses"``
    and, with ``explore``, the explorer's records (pieces, attention, sentence chrF) under ``"records"``."""
    attention = explore and translator.model.has_attention
    start = time.perf_counter()
    nbest = translator.nbest(src, settings.beam, settings.length_penalty, return_attention=attention, batch_size=128)
    seconds = time.perf_counter() - start
    hyps = [translator.text(h[0]) if h else "" for h in nbest]
    rng = np.random.default_rng(settings.seed)
    records = explorer_records(translator, src, [h[0] if h else None for h in nbest], refs) if explore else None
    return {
        **({"records": records} if explore else {}),
        **corpus_scores(hyps, refs),
        "n_sentences": len(src),
        "decode": {
            "mode": settings.mode,
            "beam": settings.beam,
            "length_penalty": settings.length_penalty,
            "precision": translator.precision,
            "sent_per_s": len(src) / max(seconds, 1e-9),
        },
        "buckets": length_buckets(src, hyps, refs, settings.buckets, settings.bootstrap, rng),
        "hypotheses": hyps,
    }


def heatmaps(
    translator: Translator,
    split: str,
    src: list[str],
    settings: EvalSettings,
    folder: Path,
    tracker: Tracker,
    step: int,
) -> None:
    """``attention_<split>_<i>.png`` for the first sentences, also logged as ``test/attention/<split>/<i>``."""
    first = list(src[: settings.n_heatmaps])
    hyps = translator.nbest(first, settings.beam, settings.length_penalty, return_attention=True)
    for i, (sentence, nbest) in enumerate(zip(first, hyps)):
        if not nbest or nbest[0].attention is None:
            continue
        src_labels, out_labels = translator.labels(sentence, nbest[0])
        title = f"{split} {i} ({settings.mode}): {translator.text(nbest[0])}"[:100]
        fig = attention_figure(nbest[0].attention.numpy(), src_labels, out_labels, title=title)
        fig.savefig(folder / f"attention_{split}_{i}.png", dpi=100)
        tracker.figure(f"test/attention/{split}/{i}", fig, step)  # closes it


# -- the run ---------------------------------------------------------------------------------


def load_test_splits(data: DataConfig) -> dict[str, tuple[list[str], list[str]]]:
    """``{split: (sources, references)}`` for each of ``data.test`` that can be loaded.

    A split is skipped (with a warning) only when the corpus comes from the hub and the hub copy
    lacks it; any other failure is an error.
    """
    if not data.test:
        raise DataError(f"data.test lists no test split for corpus {data.name}; nothing to evaluate")
    splits = {}
    for split in data.test:
        try:
            ds = load_split(data, split)
        except DataError as error:
            if corpus_root(data) is None and data.hub is not None and split not in data.hub.splits:
                log.warning("skipping test split %s: %s", split, error)
                continue
            raise
        splits[split] = (list(ds["src"]), list(ds["tgt"]))
    if not splits:
        raise DataError(f"none of the test splits {data.test} of {data.name} could be loaded")
    return splits


CONCAT_MARK = "+k"  # test_2016_flickr+k3: inputs of 3 consecutive sentences


def with_concatenations(
    splits: dict[str, tuple[list[str], list[str]]], concat: int
) -> dict[str, tuple[list[str], list[str]]]:
    """``splits`` and, for ``concat`` > 1, each split's joins of k = 2 ... ``concat`` consecutive sentences."""
    out = dict(splits)
    for split, (src, refs) in splits.items():
        for k in range(2, min(concat, len(src)) + 1):
            out[f"{split}{CONCAT_MARK}{k}"] = join_consecutive(src, refs, k)
    return out


def alignment_entry(translator: Translator, data: DataConfig) -> dict[str, Any] | None:
    """AER against ``<root>/alignments-<src>-<tgt>/`` when the model attends and that folder exists."""
    root = corpus_root(data)
    folder = None if root is None else root / f"alignments-{data.src}-{data.tgt}"
    if folder is None or not folder.is_dir() or not translator.model.has_attention:
        return None
    src, tgt, gold = read_gold(folder, data.src, data.tgt)
    result = alignment_error_rate(translator.model, translator.vocab, src, tgt, gold)
    return {**result, "diagonal": diagonal_error_rate(src, tgt, gold)}


def evaluate_run(
    run_dir: str | Path,
    beam: int = 1,
    length_penalty: float = 1.0,
    buckets: Sequence[int] = BUCKETS,
    n_heatmaps: int = 4,
    bootstrap: int = 1000,
    seed: int = 12345,
    data_root: str | Path | None = None,
    precision: str = "auto",
    device: str = "cpu",
    concat: int = 1,
) -> dict[str, Any]:
    """Evaluate ``run_dir/best.pt`` on its test splits; writes ``run_dir/eval/<mode>/`` and returns the report.

    ``data_root`` overrides the corpus root stored in the checkpoint's config (else ``data.root``
    or ``$SEQ2SEQ_DATA_DIR``, as in training). ``precision`` and ``device`` are decoding's.
    ``concat`` > 1 also scores every split's inputs of k = 2 ... ``concat`` consecutive sentences
    (split names ``<split>+k<k>``; see :func:`seq2seq.data.longinputs.join_consecutive`).
    """
    if not 1 <= concat <= MAX_K:
        raise Seq2SeqError(f"--concat {concat} is out of range: expected 1 (off) to {MAX_K} sentences per input")
    if beam < 1 or length_penalty < 0:
        raise Seq2SeqError(f"need beam >= 1 and length_penalty >= 0, got {beam} and {length_penalty}")
    run_dir = Path(run_dir)
    settings = EvalSettings(beam, length_penalty, tuple(buckets), n_heatmaps, bootstrap, seed)
    payload = load_checkpoint(run_dir / "best.pt")
    translator = Translator.from_payload(payload, run_dir / "best.pt", device, precision)
    data = translator.config.data
    if data_root is not None:
        data = dataclasses.replace(data, root=str(data_root))
    splits = with_concatenations(load_test_splits(data), concat)
    out = run_dir / "eval" / settings.mode
    out.mkdir(parents=True, exist_ok=True)
    step = int(payload.get("progress", {}).get("step", 0))
    tracker = Tracker(run_dir if settings.mode == "greedy" else out)
    try:
        report = _evaluate(translator, splits, settings, out, tracker, step, run_dir)
        report = {"checkpoint": str(run_dir / "best.pt"), **report}
        alignment = alignment_entry(translator, data)
        if alignment is not None:
            report["alignment"] = alignment
            per_head = {f"test/alignment/aer/head_{h + 1}": x["aer"] for h, x in enumerate(alignment.get("heads", []))}
            tracker.scalars({"test/alignment/aer": alignment["aer"], **per_head}, step)
    finally:
        tracker.close()
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def _evaluate(
    translator: Translator,
    splits: dict[str, tuple[list[str], list[str]]],
    settings: EvalSettings,
    out: Path,
    tracker: Tracker,
    step: int,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """Score, write hypotheses, heatmaps and the length figure, and log scalars for every split;
    the explorer page gets ``run_dir``'s attention history (:mod:`seq2seq.history`)."""
    report: dict[str, Any] = {"mode": settings.mode, "step": step, "splits": {}}
    first = next(iter(splits))
    sentences: list[dict[str, Any]] = []
    records: list[Record] = []
    for split, (src, refs) in splits.items():
        natural = CONCAT_MARK not in split
        explore = settings.explorer and (natural or split.startswith(first + CONCAT_MARK))  # keeps the page small
        result = evaluate_split(translator, src, refs, settings, explore)
        if explore:
            records += result.pop("records")
            sentences += [{"split": split, "src": s, "ref": r} for s, r in zip(src, refs)]
        (out / f"{split}.hyp.txt").write_text("".join(h + "\n" for h in result.pop("hypotheses")))
        report["splits"][split] = result
        scalars = {f"test/{split}/bleu": result["bleu"], f"test/{split}/chrf": result["chrf"]}
        for bucket in result["buckets"]:
            if bucket["bleu"] is not None:
                scalars[f"test/{split}/bleu_len_{bucket['range']}"] = bucket["bleu"]
        tracker.scalars(scalars, step)
        log.info(
            "%s %s: BLEU %.2f chrF %.2f | %s",
            split,
            settings.mode,
            result["bleu"],
            result["chrf"],
            result["bleu_signature"],
        )
        if translator.model.has_attention and settings.n_heatmaps > 0 and natural:
            heatmaps(translator, split, src, settings, out, tracker, step)
    fig = length_figure(
        {s: r["buckets"] for s, r in report["splits"].items() if CONCAT_MARK not in s},
        f"BLEU by source length ({settings.mode})",
    )
    fig.savefig(out / "length.png", dpi=100)
    tracker.figure("test/length", fig, step)  # closes it
    if settings.explorer:
        name = model_name(translator)
        summary = {s: _summary(r) for s, r in report["splits"].items() if CONCAT_MARK not in s}
        history, note = run_history(translator, run_dir)
        view = ModelView(name, records, summary, translator.attention_info)
        data = page_data(f"{name}, {settings.mode}, step {step}", sentences, [view], (), history, note)
        write_page(out / "explorer.html", data)
    return report


def run_history(translator: Translator, run_dir: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The explorer's training history of ``run_dir`` and its one-line note (:func:`seq2seq.history.page_history`)."""
    if not translator.model.has_attention:
        return None, NO_ATTENTION
    if run_dir is None:
        return None, None
    return page_history(run_dir)


def model_name(translator: Translator) -> str:
    """``bahdanau (concat)``, ``luong (general, input feeding)``, ``bahdanau (concat, 4 heads)``, ``none``."""
    a = translator.config.attention
    if a.type == "none":
        return "none"
    extra = ", input feeding" if a.type == "luong" and a.input_feeding else ""
    heads = f", {a.heads} heads" if a.heads > 1 else ""
    return f"{a.type} ({a.score}{extra}{heads})"


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("bleu", "chrf", "bleu_signature", "chrf_signature", "buckets")
    return {k: result[k] for k in keys}


def compare_runs(runs: Sequence[str | Path], out: str | Path, mode: str = "greedy", **evaluate: Any) -> Path:
    """One explorer page with every run's outputs and attention side by side (evaluating a run first if needed)."""
    pages, names = [], []
    for run in map(Path, runs):
        page = run / "eval" / mode / "explorer.html"
        if not page.exists():
            log.info("no %s yet: evaluating %s", page, run)
            evaluate_run(run, **evaluate)
        pages.append(read_page_data(page))
        names.append(pages[-1]["models"][0]["name"])
    if len(set(names)) < len(names):  # two runs of one variant: name them by their folders
        names = [f"{n} [{Path(r).name}]" for n, r in zip(names, runs)]
    try:
        data = merge_models(pages, names, f"{' vs '.join(names)} ({mode})")
    except ValueError as error:
        raise Seq2SeqError(str(error)) from None
    return write_page(out, data)


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary table, one bucket table per split, the signatures."""
    lines = [f"# Evaluation of `{report['checkpoint']}` ({report['mode']}, step {report['step']})", ""]
    lines += ["| split | sentences | BLEU | chrF | sentences/s |", "|---|---:|---:|---:|---:|"]
    for split, r in report["splits"].items():
        lines.append(
            f"| {split} | {r['n_sentences']} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['decode']['sent_per_s']:.1f} |"
        )
    for split, r in report["splits"].items():
        lines += ["", f"## {split}: BLEU by source length (words)", ""]
        lines += ["| source words | inputs | BLEU | 95% CI | output / reference length |", "|---|---:|---:|---|---:|"]
        for b in r["buckets"]:
            bleu = "-" if b["bleu"] is None else f"{b['bleu']:.2f}"
            ci = "-" if b["ci95"] is None else f"{b['ci95'][0]:.2f} – {b['ci95'][1]:.2f}"
            ratio = "-" if b.get("length_ratio") is None else f"{b['length_ratio']:.2f}"
            lines.append(f"| {b['range']} | {b['n']} | {bleu} | {ci} | {ratio} |")
        lines += ["", f"- BLEU signature: `{r['bleu_signature']}`", f"- chrF signature: `{r['chrf_signature']}`"]
    if "alignment" in report:
        a = report["alignment"]
        lines += ["", "## Attention as alignment (gold links)", "", "| AER | precision | recall | sentences |"]
        mean = f" (mean of {len(a['heads'])} heads)" if "heads" in a else ""
        lines += [
            "|---:|---:|---:|---:|",
            f"| {a['aer']:.3f} | {a['precision']:.3f} | {a['recall']:.3f} | {a['n_sentences']}{mean} |",
        ]
        for h, x in enumerate(a.get("heads", [])):
            best = ", the best head" if a.get("best_head") == h + 1 else ""
            lines.append(f"| {x['aer']:.3f} | {x['precision']:.3f} | {x['recall']:.3f} | head {h + 1}{best} |")
        if "diagonal" in a:
            d = a["diagonal"]
            lines += [
                f"| {d['aer']:.3f} | {d['precision']:.3f} | {d['recall']:.3f} | diagonal baseline (no model) |",
                "",
                "The diagonal baseline links each target word to the source word at the same relative position;",
                "attention that does not beat it is not acting as a word aligner on this set.",
            ]
    return "\n".join(lines) + "\n"


# -- the command -----------------------------------------------------------------------------


def find_latest_run(root: str | Path = "outputs") -> Path:
    """The directory under ``root`` (searched recursively) whose ``best.pt`` is newest."""
    found = [p for p in Path(root).rglob("best.pt") if p.is_file()] if Path(root).is_dir() else []
    if not found:
        raise RunDirError(f"no run with a best.pt under {root}/; train one first or pass --run DIR")
    return max(found, key=lambda p: p.stat().st_mtime).parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m seq2seq.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run directory holding best.pt (default: the newest under outputs/)")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="write one explorer page with these runs side by side (evaluating those not yet evaluated)",
    )
    parser.add_argument("--out", help="with --compare: the page to write (default outputs/compare.html)")
    parser.add_argument("--beam", type=int, default=1, help="beam width; 1 (the default) is greedy search")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="GNMT alpha for beam search; 0: none")
    parser.add_argument("--n-heatmaps", type=int, default=4, help="attention heatmaps per test split")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per length bucket")
    parser.add_argument("--data-root", help="corpus root (default: the run's data.root or $SEQ2SEQ_DATA_DIR)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="decoding precision; auto (the default): bf16 autocast on a CPU that has it natively, else fp32",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu (the default), cuda, cuda:N, mps or auto (a GPU if visible)"
    )
    parser.add_argument(
        "--concat",
        type=int,
        default=1,
        metavar="K",
        help="also score inputs of k = 2 ... K consecutive test sentences joined (long inputs; default 1: off)",
    )
    parser.add_argument(
        "--buckets",
        help="source-length bucket edges in words, e.g. 10,20,30 (default 10,...,50; with --concat 10,...,80)",
    )
    return parser


def bucket_edges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[int, ...]:
    """``--buckets`` as edges (exit 2 if they are not increasing whole numbers), or the default for ``--concat``."""
    try:
        edges = tuple(int(e) for e in args.buckets.split(",")) if args.buckets else None
    except ValueError:
        parser.error(f"--buckets {args.buckets!r}: expected increasing whole numbers separated by commas")
    if edges is not None and (not edges or list(edges) != sorted(set(edges)) or edges[0] < 1):
        parser.error(f"--buckets {args.buckets!r}: expected increasing whole numbers separated by commas")
    if edges is None:
        edges = LONG_BUCKETS if args.concat > 1 else BUCKETS
    return edges


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    edges = bucket_edges(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    options = {
        "beam": args.beam,
        "length_penalty": args.length_penalty,
        "buckets": edges,
        "n_heatmaps": args.n_heatmaps,
        "bootstrap": args.bootstrap,
        "data_root": args.data_root,
        "precision": args.precision,
        "device": args.device,
        "concat": args.concat,
    }
    try:
        if args.compare:
            mode = EvalSettings(beam=args.beam).mode
            print(f"wrote {compare_runs(args.compare, args.out or 'outputs/compare.html', mode, **options)}")
            return 0
        run = Path(args.run) if args.run else find_latest_run()
        log.info("evaluating %s", run)
        report = evaluate_run(run, **options)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
