"""Parallel corpora through Hugging Face ``datasets``: a local folder offline, or the hub.

A local corpus is a folder of ``{split}.{lang}.gz`` (or plain) text files, one segment per line,
line i aligned across languages, under a root given by ``data.root`` or ``$SEQ2SEQ_DATA_DIR``.
Without either, the corpus comes from the hub (``data.hub``). Every split is returned as a
``datasets.Dataset`` with two string columns, ``src`` and ``tgt``.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

from seq2seq.config import DataConfig, FilterConfig
from seq2seq.data.formats import load_formatted
from seq2seq.errors import DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "SEQ2SEQ_DATA_DIR"


def corpus_root(cfg: DataConfig) -> Path | None:
    """The local corpus root: ``data.root`` if set, else ``$SEQ2SEQ_DATA_DIR``, else None (hub)."""
    root = cfg.root or os.environ.get(DATA_DIR_ENV)
    return Path(root) if root else None


def load_split(cfg: DataConfig, split: str) -> datasets.Dataset:
    """One split as a Dataset with columns ``src`` and ``tgt``."""
    root = corpus_root(cfg)
    if cfg.format != "text":  # TSV, CSV, JSON Lines, a Hugging Face dataset (seq2seq.data.formats)
        return load_formatted(cfg, root / cfg.name if root is not None else None, split)
    if root is not None:
        return _load_local(root / cfg.name, split, cfg.src, cfg.tgt)
    return _load_hub(cfg, split)


def _find_file(folder: Path, split: str, lang: str) -> Path:
    for name in (f"{split}.{lang}.gz", f"{split}.{lang}"):
        if (folder / name).is_file():
            return folder / name
    names = [f.name.removesuffix(".gz") for f in folder.glob("*.*")] if folder.is_dir() else []
    found = [name.rsplit(".", 1) for name in names if name.rsplit(".", 1)[-1] not in ("md", "txt", "json")]
    langs, splits = sorted({lang for _, lang in found}), sorted({split for split, _ in found})
    held = f"; {folder} has languages {', '.join(langs)} and splits {', '.join(splits)}" if found else ""
    raise DataError(
        f"corpus file {folder / f'{split}.{lang}.gz'} not found (nor {split}.{lang}); "
        f"check data.src/data.tgt and the split names{held}"
    )


def _load_local(folder: Path, split: str, src: str, tgt: str) -> datasets.Dataset:
    if not folder.is_dir():
        raise DataError(
            f"corpus folder {folder} does not exist; set {DATA_DIR_ENV} (or data.root) to a folder that holds "
            f"{folder.name}/ with {{split}}.{{lang}}.gz files, e.g. {DATA_DIR_ENV}=/path/to/corpora, "
            f"or unset it to load from the Hugging Face hub"
        )
    paths = {"src": _find_file(folder, split, src), "tgt": _find_file(folder, split, tgt)}
    for path in paths.values():
        if _is_empty(path):
            raise DataError(f"corpus file {path} is empty; it needs one segment per line")
    try:
        sides = datasets.load_dataset("text", data_files={k: str(p) for k, p in paths.items()})
    except (UnicodeDecodeError, datasets.exceptions.DatasetGenerationError) as error:
        problems = [problem for path in paths.values() if (problem := _diagnose(path))]
        detail = "; ".join(problems) or f"{paths['src']} / {paths['tgt']}: {error}"
        raise DataError(f"could not read the corpus: {detail}") from None
    for side, path in paths.items():  # datasets splits lines like str.splitlines; people count them like wc -l
        if sides[side].num_rows != _count_lines(path):
            raise DataError(_stray_separator(path))
    n_src, n_tgt = sides["src"].num_rows, sides["tgt"].num_rows
    if n_src != n_tgt:
        raise DataError(
            f"misaligned corpus: {paths['src']} has {n_src} lines but {paths['tgt']} has {n_tgt}; "
            "line i of one must translate line i of the other"
        )
    if n_src == 0:
        raise DataError(f"corpus files {paths['src']} and {paths['tgt']} are empty")
    ds = datasets.concatenate_datasets(
        [sides["src"].rename_column("text", "src"), sides["tgt"].rename_column("text", "tgt")], axis=1
    )
    return _strip_bom(ds, paths)


BOM = "\ufeff"


def _strip_bom(ds: datasets.Dataset, paths: dict[str, Path]) -> datasets.Dataset:
    """Drop a UTF-8 byte-order mark from the first line of either side (editors on Windows write one)."""
    first = ds[0]
    marked = [side for side in ("src", "tgt") if first[side].startswith(BOM)]
    if not marked:
        return ds
    for side in marked:
        log.info("%s starts with a UTF-8 byte-order mark; it is not part of the text and was dropped", paths[side])

    def strip(batch: dict[str, list[str]]) -> dict[str, list[str]]:
        return {side: [line.removeprefix(BOM) for line in batch[side]] for side in marked}

    return ds.map(strip, batched=True, new_fingerprint=f"{ds._fingerprint}-nobom")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


SEPARATORS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits on besides \n


def _count_lines(path: Path) -> int:
    """Lines as ``wc -l`` counts them (plus a last line without a newline)."""
    with _open(path) as handle:
        data = handle.read()
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _stray_separator(path: Path) -> str:
    with _open(path) as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
            found = next((c for c in line if c in SEPARATORS), None)
            if found is not None:
                return (
                    f"{path} line {number} (as wc -l counts) contains {found!r}, a line break for the reader, which "
                    "would split it in two and shift every later line; replace it with a space"
                )
    return f"{path}: the reader found a different number of lines than wc -l counts"


def _is_empty(path: Path) -> bool:
    try:
        with _open(path) as handle:
            return handle.read(1) == b""
    except (OSError, EOFError, zlib.error):
        return False  # damaged: _diagnose explains it when datasets fails to read it


def _diagnose(path: Path) -> str | None:
    """What is wrong with a corpus file that ``datasets`` could not read (None if nothing is)."""
    number = 0  # lines read so far
    try:
        with _open(path) as handle:
            for raw in handle:
                number += 1
                raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"{path} line {number} is not valid UTF-8 (re-encode the file as UTF-8)"
    except (OSError, EOFError, zlib.error) as error:
        kind = "not a gzip file" if number == 0 else f"damaged after line {number}"
        return f"{path} is {kind} ({error}); re-create it, or drop the .gz suffix for plain text"
    return None


def _load_hub(cfg: DataConfig, split: str) -> datasets.Dataset:
    where = f"set {DATA_DIR_ENV} (or data.root) to a local corpus root that holds {cfg.name}/"
    if cfg.hub is None or not cfg.hub.path:
        raise DataError(f"{DATA_DIR_ENV} is not set and data={cfg.name} has no Hugging Face hub source; {where}")
    if split not in cfg.hub.splits:
        raise DataError(
            f"split {split!r} is not on the hub copy {cfg.hub.path} (it has {sorted(cfg.hub.splits)}); {where}"
        )
    try:
        ds = datasets.load_dataset(cfg.hub.path, split=cfg.hub.splits[split])
    except Exception as error:  # offline, unknown repo, ...: datasets raises many types
        raise DataError(
            f"could not load corpus {cfg.name!r}: {DATA_DIR_ENV} is not set, and the Hugging Face hub "
            f"dataset {cfg.hub.path!r} could not be loaded ({type(error).__name__}: {str(error)[:200]}); "
            f"{where}, or connect to the hub"
        ) from None
    missing = [lang for lang in (cfg.src, cfg.tgt) if lang not in ds.column_names]
    if missing:
        raise DataError(f"hub dataset {cfg.hub.path} has no {missing[0]!r} column (it has {ds.column_names})")
    ds = ds.select_columns([cfg.src, cfg.tgt])
    return ds.rename_columns({cfg.src: "src", cfg.tgt: "tgt"})


@dataclass
class FilterReport:
    total: int
    kept: int
    empty: int
    too_long: int
    bad_ratio: int
    identical: int = 0  # pairs whose source is their target (not empty), kept or not

    def __str__(self) -> str:
        return (
            f"kept {self.kept} of {self.total} training pairs (dropped {self.empty} empty, "
            f"{self.too_long} over max_len, {self.bad_ratio} with a length ratio over max_ratio)"
        )


KEPT, EMPTY, TOO_LONG, BAD_RATIO = 0, 1, 2, 3  # the filter's decision for each pair (stored in the corpus cache)


def pair_texts(ds: datasets.Dataset) -> tuple[list[str], list[str]]:
    """The ``src`` and ``tgt`` columns as lists, read through Arrow: iterating a dataset's column formats
    it row by row, 30-40 times slower (a minute at 4.5 million pairs)."""
    table = ds.with_format("arrow")
    return table["src"].to_pylist(), table["tgt"].to_pylist()


def filter_pairs(ds: datasets.Dataset, cfg: FilterConfig) -> tuple[datasets.Dataset, FilterReport]:
    """Drop empty pairs, pairs over ``max_len`` words and length-ratio outliers (training split only)."""
    decisions, report = filter_decisions(*pair_texts(ds), cfg)
    return ds.select([i for i, d in enumerate(decisions) if d == KEPT]), report


def filter_decisions(src: Sequence[str], tgt: Sequence[str], cfg: FilterConfig) -> tuple[bytearray, FilterReport]:
    """Each pair's decision (:data:`KEPT`, :data:`EMPTY`, :data:`TOO_LONG`, :data:`BAD_RATIO`) and the counts."""
    decisions = bytearray()
    pairs = tqdm(zip(src, tgt), total=len(src), desc="filter", unit=" pairs", unit_scale=True, disable=None)
    identical = decide(pairs, cfg, decisions)
    return decisions, filter_report(decisions, identical)


def decide(pairs: Iterable[tuple[str, str]], cfg: FilterConfig, decisions: bytearray) -> int:
    """Append each pair's decision to ``decisions``; how many pairs have a source identical to their target."""
    identical = 0
    for s, t in pairs:
        n_src, n_tgt = len(s.split()), len(t.split())
        identical += n_src > 0 and s.strip() == t.strip()
        if n_src == 0 or n_tgt == 0:
            decisions.append(EMPTY)
        elif max(n_src, n_tgt) > cfg.max_len:
            decisions.append(TOO_LONG)
        elif max(n_src, n_tgt) >= cfg.ratio_min_len and max(n_src, n_tgt) > cfg.max_ratio * min(n_src, n_tgt):
            decisions.append(BAD_RATIO)
        else:
            decisions.append(KEPT)
    return identical


def filter_report(decisions: bytearray, identical: int) -> FilterReport:
    """The counts of a split's decisions; one line if the filter kept no pair."""
    counts = [decisions.count(code) for code in (KEPT, EMPTY, TOO_LONG, BAD_RATIO)]
    report = FilterReport(len(decisions), *counts, identical=identical)
    if not report.kept:
        raise DataError(f"filtering removed every training pair ({report}); raise data.filter.max_len or max_ratio")
    return report
