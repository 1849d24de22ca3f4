"""Score a run's best checkpoint on its test splits: ``python -m seq2seq.evaluate --run RUN [--beam K]``.

For every split in the run's ``data.test`` it decodes the sources (greedy, or beam search with
``--beam K``) and writes into ``RUN/eval/<mode>/`` (``mode`` is ``greedy`` or ``beamK``):

- ``report.json``: sacreBLEU BLEU and chrF with their signatures, decoding speed, and BLEU per
  source-length bucket with a 95% bootstrap interval (:mod:`seq2seq.report`);
- ``report.md``: the same as Markdown tables; ``length.png``: BLEU against source length, one line
  per split (cf. Bahdanau et al. 2015, Fig. 2); ``<split>.hyp.txt``: the hypotheses;
- ``attention_<split>_<i>.png``: heatmaps of the first sentences (attention models only);
- ``explorer.html``: every sentence with its output, chrF and attention in one page
  (:mod:`seq2seq.explorer`); ``--compare RUN_A RUN_B ...`` writes one page with several runs;
- with ``--concat K``, each split's inputs of k = 2 ... K consecutive sentences as ``<split>+k<k>``,
  bucketed up to 81+ words, and ``alignment`` in the report: AER of the attention against gold
  word alignments where the corpus has them (:mod:`seq2seq.testsets`).

``make eval`` prints the report and where it wrote it, the explorer page included.

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

from seq2seq.alignment import alignment_error_rate
from seq2seq.data.longinputs import MAX_K
from seq2seq.errors import Seq2SeqError
from seq2seq.explorer import (
    FULL_SCORES,
    NO_ATTENTION,
    ModelView,
    Record,
    history_modules,
    merge_models,
    page_data,
    read_page_data,
    write_page,
)
from seq2seq.hardware import PRECISIONS
from seq2seq.history import page_history
from seq2seq.metrics import corpus_scores
from seq2seq.model import Transformer
from seq2seq.plots import attention_figure, length_figure
from seq2seq.report import BUCKETS, LONG_BUCKETS, bucket_ranges, length_buckets, markdown, range_label
from seq2seq.runs import find_latest_run
from seq2seq.testsets import CONCAT_MARK, alignment_entry, load_test_splits, with_concatenations
from seq2seq.tracking import Tracker
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.translator import Translator, explorer_records

log = logging.getLogger("seq2seq")

__all__ = [
    "BUCKETS",
    "CONCAT_MARK",
    "LONG_BUCKETS",
    "alignment_error_rate",
    "bucket_ranges",
    "evaluate_run",
    "length_buckets",
    "load_test_splits",
    "main",
    "markdown",
    "range_label",
    "with_concatenations",
]


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
    translator: Translator,
    src: list[str],
    refs: list[str],
    settings: EvalSettings,
    explore: bool = False,
    full: int = 0,
) -> dict[str, Any]:
    """Decode one split and score it; the result also carries the hypotheses under ``"hypotheses"``
    and, with ``explore``, the explorer's records (pieces, attention, sentence chrF) under ``"records"``,
    every score kept for the first ``full`` sentences (:func:`seq2seq.translator.explorer_records`)."""
    attention = explore and translator.model.has_attention
    start = time.perf_counter()
    nbest = translator.nbest(src, settings.beam, settings.length_penalty, return_attention=attention, batch_size=128)
    seconds = time.perf_counter() - start
    hyps = [translator.text(h[0]) if h else "" for h in nbest]
    rng = np.random.default_rng(settings.seed)
    best = [h[0] if h else None for h in nbest]
    records = explorer_records(translator, src, best, refs, full) if explore else None
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
        result = evaluate_split(translator, src, refs, settings, explore, FULL_SCORES if natural else 0)
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
        summary = {s: _summary(r) for s, r in report["splits"].items() if CONCAT_MARK not in s}
        history, note = run_history(translator, run_dir)
        view = ModelView(translator.name, records, summary, translator.attention_info)
        title = f"{translator.name}, {settings.mode}, step {step}"
        write_page(out / "explorer.html", page_data(title, sentences, [view], (), history, note, SCORES_NOTE))
    return report


SCORES_NOTE = (
    f"This page keeps every score of the first {FULL_SCORES} sentences of each test split; "
    "the other sentences (and the long inputs) keep the scores of weights of 2 % and more."
)


def run_history(translator: Translator, run_dir: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The explorer's training history of ``run_dir`` and its one-line note (:func:`seq2seq.history.page_history`)."""
    if not translator.model.has_attention:
        return None, NO_ATTENTION
    if run_dir is None:
        return None, None
    history, note = page_history(run_dir)
    if history is not None and isinstance(translator.model, Transformer):
        history_modules(run_dir, history)  # the slider follows the page's module picker
    return history, note


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


# -- the command -----------------------------------------------------------------------------


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
    out = run / "eval" / report["mode"]
    print(f"\nwrote {out}/: report.md, report.json, length.png and the explorer page {out / 'explorer.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
