"""Corpora in other shapes than a folder of ``{split}.{lang}`` files, all read through ``datasets``.

``data.format`` says which (``data.files`` where):

    tsv, csv   one file of pairs, or one per split (``data.files=pairs.*.tsv``: ``*`` is the split's
               name, pairs.train.tsv, pairs.valid.tsv, pairs.test.tsv); columns by
               index or by header name (``data.columns.en=0``); extra columns are ignored, so
               the manythings/Tatoeba layout ``en<TAB>fr<TAB>attribution`` works as it is
    jsonl      JSON Lines: two fields named by language (or by ``data.columns``), or a
               ``translation`` dict ``{"de": ..., "en": ...}`` (the Hugging Face translation layout)
    hf         a Hugging Face dataset: a hub id (``data.hf_config`` for its config name), or a
               local folder written by ``save_to_disk`` or holding parquet/JSON Lines files,
               in the ``translation`` layout or with named columns

A corpus that is one file has no splits: :func:`split_rows` holds out validation and test pairs
(``data.split``: sizes or fractions, and a seed), grouping pairs by their source sentence so that
no source sits on both sides of a split (Tatoeba has many sentences with several translations).
The split is a function of the file and ``data.split``, so a resumed run gets the same one.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import datasets
import pyarrow

from seq2seq.config import DataConfig
from seq2seq.errors import DataError

log = logging.getLogger(__name__)

SPLIT_MARK = "*"  # in data.files: one file per split, the split's name in place of the mark


def load_formatted(cfg: DataConfig, folder: Path | None, split: str) -> datasets.Dataset:
    """Split ``split`` of a ``tsv``/``csv``/``jsonl``/``hf`` corpus, columns ``src`` and ``tgt``.

    ``folder`` is the corpus folder (``root/name``) that relative ``data.files`` are looked up in
    first, or None.
    """
    if cfg.format == "hf":
        return _load_hf(cfg, folder, split)
    if SPLIT_MARK in cfg.files:
        return _read_file(cfg, _resolve(cfg.files.replace(SPLIT_MARK, split), folder))
    role = _split_role(cfg, split)
    path = _resolve(cfg.files, folder)
    key = (str(path), path.stat().st_mtime_ns, cfg.format, cfg.header, cfg.src, cfg.tgt, tuple(sorted(cfg.columns.items())),
           cfg.split.valid, cfg.split.test, cfg.split.seed)  # fmt: skip
    if key not in _SPLIT_FILES:  # a process loads train, valid (and test) from one file: read and cut it once
        whole = _read_file(cfg, path)
        _SPLIT_FILES.clear()
        _SPLIT_FILES[key] = whole, split_rows(whole, cfg)
    whole, rows = _SPLIT_FILES[key]
    return whole.select(rows[role])


_SPLIT_FILES: dict[tuple, tuple[datasets.Dataset, dict[str, list[int]]]] = {}  # the last file split, by its settings


# -- one file: TSV, CSV, JSON Lines ---------------------------------------------------------------


def _candidates(name: str, folder: Path | None) -> list[Path]:
    """Where ``data.files`` may be: as given if absolute, else in the corpus folder, then the working directory."""
    path = Path(os.path.expanduser(name))
    return [path] if path.is_absolute() else [*([folder / path] if folder else []), Path.cwd() / path]


def _resolve(name: str, folder: Path | None) -> Path:
    """``data.files`` as the path of a file (:func:`_candidates`), or one line saying where it was looked for."""
    candidates = _candidates(name, folder)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"corpus file {name} not found (looked in {', '.join(str(c.parent) for c in candidates)}); "
        "set data.files to the file's path (absolute, or relative to the corpus folder or the working directory)"
    )


def _open_text(path: Path) -> io.TextIOBase:
    return (
        gzip.open(path, "rt", encoding="utf-8", newline="")
        if path.suffix == ".gz"
        else open(path, encoding="utf-8", newline="")
    )


def _read_file(cfg: DataConfig, path: Path) -> datasets.Dataset:
    if cfg.format == "jsonl":
        quiet = logging.getLogger("datasets.packaged_modules.json.json")  # its "in row 9" means line 10
        quiet.addFilter(_no_json_failure)
        try:
            ds = datasets.load_dataset("json", data_files=str(path), split="train")
        except Exception as error:  # datasets wraps pyarrow's JSON errors in several types
            raise DataError(
                _json_problem(path) or f"could not read {path} as JSON Lines ({first_line(error)})"
            ) from None
        finally:
            quiet.removeFilter(_no_json_failure)
        try:
            ds.data.table.validate(full=True)  # pyarrow reads bytes that are not UTF-8 into strings: they fail later
        except pyarrow.ArrowInvalid:
            raise DataError(_json_problem(path) or f"{path} is not valid UTF-8 (re-encode it as UTF-8)") from None
        return pairs_from_columns(ds, cfg, str(path))
    columns, n_fields, header = _check_delimited(cfg, path)
    names = [f"c{i}" for i in range(n_fields)]
    features = datasets.Features({name: datasets.Value("string") for name in names})
    ds = datasets.load_dataset(
        "csv",
        data_files=str(path),
        split="train",
        sep="\t" if cfg.format == "tsv" else ",",
        header=None,
        skiprows=1 if header else 0,
        column_names=names,
        features=features,
        quoting=csv.QUOTE_NONE if cfg.format == "tsv" else csv.QUOTE_MINIMAL,
        keep_default_na=False,
        na_filter=False,
    )
    ds = ds.select_columns([names[columns[0]], names[columns[1]]])
    return ds.rename_columns({names[columns[0]]: "src", names[columns[1]]: "tgt"})


def _no_json_failure(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Failed to load JSON")


def _json_problem(path: Path) -> str | None:
    """The first line of a JSON Lines file that is not one JSON object, with its number, or None."""
    number = 0
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):  # JSON Lines breaks lines at \n only
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                return f"{path} line {number} is not valid UTF-8 (re-encode it as UTF-8)"
            if not line:
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                return (
                    f"{path} line {number} is not valid JSON ({error.msg}: column {error.colno}): {_quote(line)}; "
                    "JSON Lines holds one JSON object a line"
                )
            if not isinstance(value, dict):
                return f"{path} line {number} is a JSON {type(value).__name__}, not an object: {_quote(line)}"
    return None if number else f"corpus file {path} is empty; it needs one JSON object a line"


def _rows(cfg: DataConfig, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a TSV/CSV file as ``csv`` reads it with the format's dialect."""
    with _open_text(path) as handle:
        if cfg.format == "tsv":
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(handle)
        try:
            for fields in reader:
                yield reader.line_num, fields
        except UnicodeDecodeError:
            raise DataError(f"{path} after line {reader.line_num} is not valid UTF-8 (re-encode it as UTF-8)") from None
        except csv.Error as error:
            raise DataError(f"{path} line {reader.line_num}: {error}") from None


def _check_delimited(cfg: DataConfig, path: Path) -> tuple[tuple[int, int], int, bool]:
    """Which columns hold src and tgt, how many columns the file has, whether line 1 is a header.

    Every line must have both columns: the first that does not is named with its line number.
    """
    header = cfg.header if cfg.header is not None else cfg.format == "csv"
    rows = _rows(cfg, path)
    first = next(rows, None)
    if first is None:
        raise DataError(f"corpus file {path} is empty; it needs one pair per line")
    _, fields = first
    columns = tuple(_column_index(cfg, lang, fields if header else None, path, fields) for lang in (cfg.src, cfg.tgt))
    if columns[0] == columns[1]:
        raise DataError(_one_column_for_both(cfg, f"column {columns[0]} of {path}"))
    need, widest = max(columns) + 1, len(fields)
    delimiter = "tab" if cfg.format == "tsv" else "comma"
    for number, fields in itertools.chain([] if header else [first], rows):  # one line at a time
        if not fields:
            continue  # a blank line: datasets skips it too
        if len(fields) < need:
            hint = ""
            if len(fields) == 1:
                hint = f"; the line has no {delimiter} in it: {_quote(fields[0])} (is data.format right?)"
            raise DataError(
                f"{path} line {number} has {len(fields)} column(s), but data.columns needs column {need - 1} "
                f"(counting from 0){hint}"
            )
        widest = max(widest, len(fields))
    return columns, widest, header


def column_of(cfg: DataConfig, lang: str) -> tuple[str | None, str]:
    """The column ``data.columns`` names for ``lang`` (by language, else by role: ``src``/``tgt``), or
    None, and the key that named it (for messages)."""
    role = "src" if lang == cfg.src else "tgt"
    for key in (lang, role):
        if cfg.columns.get(key) is not None:
            return str(cfg.columns[key]), f"data.columns.{key}"
    return None, f"data.columns.{role}"


def _column_index(cfg: DataConfig, lang: str, header: list[str] | None, path: Path, first: list[str]) -> int:
    """The index of ``lang``'s column (``data.columns``, default src 0 and tgt 1): a header name or an index."""
    named, key = column_of(cfg, lang)
    wanted = named if named is not None else ("0" if lang == cfg.src else "1")
    if header is not None and wanted in header:
        return header.index(wanted)
    if wanted.isdigit() and int(wanted) < len(first):
        return int(wanted)
    delimiter = "tab" if cfg.format == "tsv" else "comma"
    separator = "\t" if cfg.format == "tsv" else ","
    seen = f"its first line is {_quote(separator.join(first))}"
    if len(first) == 1:
        raise DataError(
            f"{path} has no {delimiter} in its first line ({seen}); is data.format={cfg.format} the file's "
            "format (tsv: tab-separated, csv: comma-separated)?"
        )
    have = ", ".join(header) if header is not None else f"0 to {len(first) - 1} (no header line: data.header=false)"
    raise DataError(f"{path} has no column {wanted!r} for {lang} ({key}); it has columns {have}; {seen}")


def _one_column_for_both(cfg: DataConfig, column: str) -> str:
    keys = " and ".join(column_of(cfg, lang)[1] for lang in (cfg.src, cfg.tgt))
    return f"{keys} both name {column}: the source would be its own target; give each side its column"


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# -- Hugging Face datasets --------------------------------------------------------------------------


def pairs_from_columns(ds: datasets.Dataset, cfg: DataConfig, where: str) -> datasets.Dataset:
    """``src``/``tgt`` from a ``translation`` dict column or from columns named by ``data.columns`` or the languages."""
    columns = pair_columns(cfg, ds.column_names, ds.features, where)
    if columns is None:
        src, tgt = cfg.src, cfg.tgt

        def unpack(batch):
            return {"src": [t[src] for t in batch["translation"]], "tgt": [t[tgt] for t in batch["translation"]]}

        return ds.map(unpack, batched=True, remove_columns=ds.column_names)
    ds = ds.select_columns(list(columns))
    return ds.rename_columns({columns[0]: "src", columns[1]: "tgt"})


def pair_columns(cfg: DataConfig, names: list[str], features, where: str) -> tuple[str, str] | None:
    """The columns that hold the source and the target, or None: a ``translation`` column of
    ``{lang: text}`` dicts that has both languages; one line naming what is there otherwise."""
    wanted = {lang: column_of(cfg, lang)[0] or lang for lang in (cfg.src, cfg.tgt)}
    named = any(column_of(cfg, lang)[0] is not None for lang in (cfg.src, cfg.tgt))
    if not named and "translation" in names and not {cfg.src, cfg.tgt} <= set(names):
        feature = features["translation"]
        langs = list(getattr(feature, "languages", None) or (feature.keys() if isinstance(feature, dict) else []))
        missing = [lang for lang in (cfg.src, cfg.tgt) if lang not in langs]
        if missing:
            raise DataError(
                f"{where}: its translation column has no {missing[0]!r} (it has {', '.join(map(str, langs))}); "
                "set data.src and data.tgt to two of those"
            )
        return None
    if wanted[cfg.src] == wanted[cfg.tgt]:
        raise DataError(_one_column_for_both(cfg, f"column {wanted[cfg.src]!r} of {where}"))
    missing = [f"{wanted[lang]!r}" for lang in (cfg.src, cfg.tgt) if wanted[lang] not in names]
    if missing:
        raise DataError(
            f"{where} has no column {missing[0]} (it has {', '.join(names)}); set data.columns.src and "
            "data.columns.tgt to the columns that hold each side, or use a translation column of {lang: text} dicts"
        )
    return wanted[cfg.src], wanted[cfg.tgt]


def _load_hf(cfg: DataConfig, folder: Path | None, split: str) -> datasets.Dataset:
    local = local_dataset(cfg.files, folder)
    if local is not None:
        return _local_split(local, cfg, split)
    try:
        ds = datasets.load_dataset(cfg.files, cfg.hf_config, split=split)
    except Exception as error:  # offline, unknown repo or config, no such split: datasets raises many types
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
        why = "HF_HUB_OFFLINE is set" if offline else first_line(error)
        raise DataError(
            f"could not load {cfg.files!r}{f' ({cfg.hf_config})' if cfg.hf_config else ''} split {split!r} from the "
            f"Hugging Face hub ({why}); where the hub is reachable, save it with "
            f"datasets.load_dataset(...).save_to_disk(DIR) and set data.files=DIR"
        ) from None
    return pairs_from_columns(ds, cfg, f"{cfg.files} split {split}")


def local_dataset(name: str, folder: Path | None) -> Path | None:
    """The folder ``data.files`` names (:func:`_candidates`), or None: a hub id."""
    return next((c for c in _candidates(name, folder) if c.is_dir()), None)


def _local_split(path: Path, cfg: DataConfig, split: str) -> datasets.Dataset:
    where = f"{path} split {split}"
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():  # save_to_disk
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DataError(
                    f"{path} has no split {split!r} (it has {', '.join(loaded)}); set data.train/valid/test"
                )
            return pairs_from_columns(loaded[split], cfg, where)
        whole = pairs_from_columns(loaded, cfg, str(path))  # one Dataset: no splits of its own
        return whole.select(split_rows(whole, cfg)[_split_role(cfg, split)])
    try:
        loaded = datasets.load_dataset(str(path))  # parquet / JSON Lines / CSV files, splits by file name
    except Exception as error:
        raise DataError(f"could not read {path} as a dataset folder ({first_line(error)})") from None
    if split not in loaded:
        raise DataError(f"{path} has no split {split!r} (it has {', '.join(loaded)}); set data.train/valid/test")
    return pairs_from_columns(loaded[split], cfg, where)


def first_line(error: BaseException) -> str:
    """An exception's type and the start of its message's first line, for a one-line error."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


# -- a held-out split for a corpus that has none ----------------------------------------------------


def _split_role(cfg: DataConfig, split: str) -> str:
    roles = {cfg.train: "train", cfg.valid: "valid", **{name: "test" for name in cfg.test[:1]}}
    if split not in roles:
        raise DataError(
            f"{cfg.files} is one file with no splits of its own: it is cut into {cfg.train}, {cfg.valid} and "
            f"{cfg.test[0] if cfg.test else 'test'} (data.split), not {split!r}"
        )
    return roles[split]


def _size(value: float, total: int, key: str) -> int:
    n = round(value * total) if value < 1 else int(value)
    if n < 1:
        raise DataError(
            f"{key}={value} leaves that split empty ({total:,} pairs in all); give a size or a larger fraction"
        )
    return n


def split_rows(ds: datasets.Dataset, cfg: DataConfig) -> dict[str, list[int]]:
    """Row indices of ``train``, ``valid`` and ``test``: whole groups of pairs with the same source,
    in a seeded shuffle of the groups, test first, then valid, the rest train."""
    sources = ds.with_format("arrow")["src"].to_pylist()  # a Column would format row by row
    total = len(sources)
    want = {
        "test": _size(cfg.split.test, total, "data.split.test"),
        "valid": _size(cfg.split.valid, total, "data.split.valid"),
    }
    if want["test"] + want["valid"] >= total:
        raise DataError(
            f"data.split takes {want['valid']:,} validation and {want['test']:,} test pairs of {total:,}, "
            "which leaves no training pairs; make them smaller"
        )
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        groups.setdefault(s.strip(), []).append(i)
    order = list(groups.values())  # first occurrence order: the same for the same file
    random.Random(cfg.split.seed).shuffle(order)
    out: dict[str, list[int]] = {"test": [], "valid": [], "train": []}
    role = iter(["test", "valid", "train"])
    current = next(role)
    for group in order:
        while current != "train" and len(out[current]) >= want[current]:
            current = next(role)
        out[current].extend(group)
    shared = sum(len(g) for g in groups.values() if len(g) > 1)
    log.info(
        "%s: no splits in the file; held out by source sentence (seed %d): train %s, valid %s, test %s pairs; "
        "%s pairs share their source with another pair and were kept in one split",
        cfg.files,
        cfg.split.seed,
        f"{len(out['train']):,}",
        f"{len(out['valid']):,}",
        f"{len(out['test']):,}",
        f"{shared:,}",
    )
    return {k: sorted(v) for k, v in out.items()}
