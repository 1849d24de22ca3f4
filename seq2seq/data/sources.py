"""Which files a run's corpus is read from, what identifies its prepared cache, and their content hash.

This module imports neither ``datasets`` nor SentencePiece: the training process uses it to find
a prepared corpus (:mod:`seq2seq.data.store`) before deciding whether a child process must
prepare one. Files are found as :mod:`~seq2seq.data.corpora` and :mod:`~seq2seq.data.formats`
find them; where they are not found here, the child that reads them says why in one line. A hub
dataset read with ``data.streaming=true`` is known by its id, config and the commit the hub
serves now (:func:`hub_content`, through the hub client alone).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

from seq2seq.config import DataConfig
from seq2seq.data.vocab import cache_dir
from seq2seq.errors import DataError

CACHE_ENV = "SEQ2SEQ_CACHE_DIR"
KEY_VERSION = 2  # bump when the way an entry is built changes what it holds (2: the one-pass vocab sample)


def corpus_root(cfg: DataConfig) -> Path | None:
    root = cfg.root or os.environ.get("SEQ2SEQ_DATA_DIR")
    return Path(root) if root else None


def corpus_files(cfg: DataConfig) -> list[Path] | None:
    """The files the training and validation splits are read from, or None (a hub dataset, or not found)."""
    root = corpus_root(cfg)
    folder = root / cfg.name if root is not None else None
    if cfg.format == "text":
        if folder is None:
            return None
        found = [_first([folder / f"{s}.{lang}.gz", folder / f"{s}.{lang}"]) for s in (cfg.train, cfg.valid)
                 for lang in (cfg.src, cfg.tgt)]  # fmt: skip
    elif cfg.format == "hf":
        local = _first(_candidates(cfg.files or "", folder), dirs=True)
        if local is None:
            return None
        found = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else [local]
    elif "*" in (cfg.files or ""):
        found = [_first(_candidates(cfg.files.replace("*", s), folder)) for s in (cfg.train, cfg.valid)]
    else:
        found = [_first(_candidates(cfg.files or "", folder))]
    if not found or any(path is None for path in found):
        return None
    return sorted({path.resolve() for path in found})  # type: ignore[union-attr]


def _candidates(name: str, folder: Path | None) -> list[Path]:
    path = Path(os.path.expanduser(name))
    return [path] if path.is_absolute() else [*([folder / path] if folder else []), Path.cwd() / path]


def _first(paths: list[Path], dirs: bool = False) -> Path | None:
    return next((p for p in paths if p.is_file() or (dirs and p.is_dir() and str(p) != ".")), None)


def cache_key(cfg: DataConfig, files: list[Path] | None) -> str:
    """Names a prepared corpus: the files (or hub dataset), the reading, filter, long-example and tokenizer settings."""
    settings = dataclasses.asdict(cfg)
    settings.pop("test")  # test splits are read by make eval, never prepared
    settings.pop("root")  # the files' paths say where the corpus is
    settings.pop("streaming")  # read whole or streamed, the entry is the same
    described = {"version": KEY_VERSION, "data": settings, "files": [str(p) for p in files or []]}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]
    return f"{cfg.name.replace('/', '_')}-{cfg.src}-{cfg.tgt}-{digest}"


def content_hash(files: list[Path]) -> dict[str, str]:
    """Each file's sha256 (seconds for a corpus of millions of pairs), to tell a changed corpus from its cache."""
    hashes = {}
    total = sum(path.stat().st_size for path in files)
    with tqdm(total=total, desc="corpus: checking files", unit="B", unit_scale=True, disable=None, leave=False) as bar:
        for path in files:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 23):
                    digest.update(chunk)
                    bar.update(len(chunk))
            hashes[str(path)] = digest.hexdigest()
    return hashes


def is_hub_id(name: str) -> bool:
    """Whether ``data.files`` (not found on disk) can be a hub id (``wmt14``, ``owner/name``), not a path."""
    return not os.path.isabs(name) and not name.startswith((".", "~")) and name.count("/") <= 1


def hub_content(cfg: DataConfig) -> tuple[dict | None, str]:
    """A hub dataset's id, config and the commit its main branch is at now, or None and why it is unknown.

    The commit is the revision ``datasets`` resolves when it builds the streaming reader (the
    builder's ``hash``); the child streams that commit, so the entry is of what was checked here.
    """
    from huggingface_hub import HfApi  # the hub client alone (~25 MB), not datasets

    try:
        sha = HfApi().dataset_info(cfg.files, timeout=60).sha
    except Exception as error:  # offline, no such repository, no access: the hub client raises many types
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
        return None, "HF_HUB_OFFLINE is set" if offline else f"{type(error).__name__}: {str(error)[:200]}"
    return {"hub": cfg.files, "config": cfg.hf_config, "revision": sha}, ""


def describe(content: dict | None) -> str:
    """What a cache entry's corpus was fingerprinted by, for the log."""
    if not content:
        return "its name and settings alone (a hub dataset: delete its entry to prepare it again)"
    if "hub" in content:
        config = f" ({content['config']})" if content["config"] else ""
        return f"hub dataset {content['hub']}{config} at commit {content['revision']}"
    return f"the sha256 of {len(content)} file(s) under {os.path.commonpath([os.path.dirname(p) for p in content])}"


def changed(content: dict, was: dict | None, entry: Path) -> str:
    """One line: how the corpus differs from the one its cache ``entry`` was built from."""
    if "hub" in content:
        then = f"commit {was['revision']}" if was and "hub" in was else "a reading without streaming (no commit)"
        return f"{describe(content)} now, but its cache {entry} was built from {then}; preparing it again"
    names = [name for name, digest in content.items() if (was or {}).get(name) != digest] or sorted(was or {})
    return f"corpus file {names[0]} changed since its cache {entry} was built; preparing it again"


def writable_cache() -> Path:
    """``$SEQ2SEQ_CACHE_DIR/corpus``, created; one line naming it if it cannot be written."""
    folder = cache_dir() / "corpus"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise DataError(
            f"the cache directory {folder} is not writable ({error.strerror}); set {CACHE_ENV} to a folder "
            "you can write (it holds the prepared corpus and SentencePiece models)"
        ) from None
    return folder
