"""What ``make eval`` scores: a run's test splits, their long-input joins, and gold word alignments.

The splits are ``data.test`` of the run's corpus, read quietly (no ``datasets`` progress bars or
log lines between the report's lines); ``--concat K`` adds each split's inputs of k = 2 ... K
consecutive sentences as ``<split>+k<k>`` (:mod:`seq2seq.data.longinputs`); the alignment entry
scores attention against ``<root>/alignments-<src>-<tgt>/`` where the corpus root holds it
(:mod:`seq2seq.alignment`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import datasets

from seq2seq.alignment import alignment_error_rate, diagonal_error_rate, read_gold
from seq2seq.config import DataConfig
from seq2seq.data.corpora import corpus_root, load_split, pair_texts
from seq2seq.data.longinputs import join_consecutive
from seq2seq.errors import DataError
from seq2seq.translator import Translator

log = logging.getLogger("seq2seq")


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars ("Generating src split") or info lines inside; restored after."""
    bars, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


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
            with quiet_datasets():
                ds = load_split(data, split)
        except DataError as error:
            if corpus_root(data) is None and data.hub is not None and split not in data.hub.splits:
                log.warning("skipping test split %s: %s", split, error)
                continue
            raise
        splits[split] = pair_texts(ds)
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
