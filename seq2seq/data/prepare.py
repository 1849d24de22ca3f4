"""A run's training and validation data: a prepared corpus from the cache, or prepared once in a child process.

The training split is encoded once into a cache entry of memory-mapped arrays
(:mod:`seq2seq.data.store`) named by the corpus's files, the reading, filter, long-example and
tokenizer settings (:func:`seq2seq.data.sources.cache_key`). :func:`prepare_data` hashes the
corpus files (a file changed since its entry was built is prepared again, and said), opens a
good entry without reading, filtering or encoding anything, and maps its arrays: the trainer's
memory does not grow with the corpus, and every rank, resume and sweep job shares one copy in
the page cache. Without a good entry, a short-lived child process (``python -m
seq2seq.data.prepare``) builds one (:mod:`seq2seq.data.build`) into a temporary folder that is
renamed into place when whole; ``datasets`` (pyarrow, pandas, the hub client: ~0.1 GB resident)
is imported only there. A :class:`~seq2seq.errors.DataError` in the child is raised again here
and the child's log lines are logged here.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import subprocess
import sys
import time
import traceback
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seq2seq.config import Config
from seq2seq.data import store
from seq2seq.data.sources import (
    CACHE_ENV,
    cache_key,
    changed,
    content_hash,
    corpus_files,
    hub_content,
    is_hub_id,
    writable_cache,
)
from seq2seq.errors import DataError, Seq2SeqError

log = logging.getLogger(__name__)

WRITE_FAILED = 3  # the child's exit status when it cannot write its reply
INTERRUPTED = 130  # the exit status after Ctrl-C, as a shell reports it


@dataclass
class Split:
    src_ids: list[array]  # per sentence, array("i") of token ids (no EOS)
    tgt_ids: list[array]
    src_texts: list[str] = field(default_factory=list)  # raw texts: kept for validation only
    tgt_texts: list[str] = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)  # the split as loaded: {"pairs", "sha256"} (resume checks it)


def prepare_data(config: Config, vocab_state: dict | None = None) -> tuple[dict, store.MappedSplit, Split]:
    """``(vocabulary state, training split, validation split)`` for ``config``, from the corpus cache.

    ``vocab_state`` (a resumed run's) is the vocabulary the ids must use: no SentencePiece
    training; the returned state goes to :meth:`seq2seq.data.vocab.Vocab.from_state_dict`.
    Ctrl-C ends the process with status 130, leaving no half-written entry to be used later.
    """
    try:
        return _prepare_data(config, vocab_state)
    except KeyboardInterrupt:
        log.error("interrupted while preparing the corpus (Ctrl-C): nothing half-written was kept")
        raise SystemExit(INTERRUPTED) from None


def _prepare_data(config: Config, vocab_state: dict | None) -> tuple[dict, store.MappedSplit, Split]:
    folder = writable_cache()
    files = corpus_files(config.data)
    content, unchecked = content_hash(files) if files else None, ""  # None: a hub dataset, known by its name
    if content is None and config.data.streaming and is_hub_id(config.data.files or ""):
        content, unchecked = hub_content(config.data)
    entry = folder / cache_key(config.data, files)
    if vocab_state is not None:
        entry = _entry_for_vocab(entry, vocab_state)
    with store.locked(entry):  # a second preparer waits here, then opens what the first one wrote
        started = time.monotonic()
        opened = _open_good(entry, content)
        if opened is not None:
            log.info("corpus from cache %s (opened in %.1f s): %s", entry, time.monotonic() - started,
                     "; ".join(opened.manifest["log"]))  # fmt: skip
            if unchecked:
                log.warning("could not ask the hub whether %s has changed since its cache was built (%s); "
                            "using the cache as it is", config.data.files, unchecked)  # fmt: skip
        else:
            _build(config, vocab_state, entry, content)
            opened = _open_good(entry, content)
            if opened is None:
                raise DataError(f"the corpus cache just written in {entry} does not check out; is the disk failing?")
    return vocab_state or opened.small["vocab"], opened.train, _valid_split(config, opened)


def _entry_for_vocab(entry: Path, vocab_state: dict) -> Path:
    """A resumed run's vocabulary: the usual entry if it was built with it, else one of its own."""
    from seq2seq.data.vocab import Vocab

    fingerprint = Vocab.from_state_dict(vocab_state).fingerprint
    manifest = store.read_manifest(entry)
    if manifest is not None and manifest.get("vocab_fingerprint") == fingerprint:
        return entry
    return entry.with_name(f"{entry.name}-v{fingerprint[:12]}")


def _open_good(entry: Path, content: dict | None) -> store.Entry | None:
    """The entry, mapped, if it is whole, undamaged and of the corpus as it is now; else None, said in one line."""
    manifest = store.read_manifest(entry)
    if manifest is None:
        if entry.exists():
            log.warning("corpus cache %s is incomplete (no manifest); preparing the corpus again", entry)
        return None
    problem = store.damage(entry, manifest)
    if problem:
        log.warning("corpus cache %s is damaged (%s); preparing the corpus again", entry, problem)
        return None
    if content is not None and manifest.get("content") != content:
        log.warning(changed(content, manifest.get("content"), entry))
        return None
    return store.open_entry(entry, manifest)


def _valid_split(config: Config, opened: store.Entry) -> Split:
    valid, cap = opened.small["valid"], config.train.valid_max_sentences
    rows = slice(None) if cap is None else slice(0, cap)
    return Split(
        [array("i", ids) for ids in valid["src_ids"][rows]],
        [array("i", ids) for ids in valid["tgt_ids"][rows]],
        valid["src_texts"][rows],
        valid["tgt_texts"][rows],
        opened.manifest["valid_fingerprint"],  # of the whole split: a resumed run may change the cap
    )


def _build(config: Config, vocab_state: dict | None, entry: Path, content: dict | None) -> None:
    """Build the entry in a child process, into a temporary folder renamed into place when whole."""
    tmp, stale = store.temporary(entry)
    if stale:
        log.info("removed %d unfinished corpus cache folder(s) left by a preparation that was killed", stale)
    try:
        _run_child(config, vocab_state, tmp, content)
        store.publish(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after publish; else what a failed build left


def _run_child(config: Config, vocab_state: dict | None, tmp: Path, content: dict | None) -> None:
    package_root = str(Path(__file__).resolve().parents[2])  # the folder that holds seq2seq/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    request, reply = tmp / "request.pkl", tmp / "reply.pkl"
    try:
        request.write_bytes(pickle.dumps((config.to_dict(), vocab_state, str(tmp), content)))
    except OSError as error:
        raise _full(tmp, error) from None
    done = subprocess.run([sys.executable, "-m", "seq2seq.data.prepare", str(request), str(reply)], env=env)
    if done.returncode == INTERRUPTED:
        raise KeyboardInterrupt
    if done.returncode == WRITE_FAILED:
        raise _full(tmp, OSError(errno.ENOSPC, "could not write the result"))
    if not reply.exists():
        raise DataError(f"the process preparing the corpus exited with status {done.returncode} before it finished")
    outcome = pickle.loads(reply.read_bytes())
    reply.unlink()
    request.unlink()
    for record in outcome["log"]:
        logging.getLogger(record.name).handle(record)
    if "error" in outcome:
        raise outcome["error"]


def _full(tmp: Path, error: OSError) -> DataError:
    return DataError(
        f"could not write the prepared corpus into {tmp.parent} ({error.strerror}: disk full, quota or file-size "
        f"limit?); free space there, or set {CACHE_ENV} to a disk with room, and start again"
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args, record.exc_info = record.getMessage(), None, None  # picklable
        self.records.append(record)


def _prepare(config_dict: dict[str, Any], vocab_state: dict | None, folder: str, content: dict | None) -> None:
    """The child's work (imports ``datasets`` here, never in the training process)."""
    import datasets

    from seq2seq.data.build import build_entry
    from seq2seq.data.streaming import build_streamed

    if not sys.stderr.isatty():
        datasets.disable_progress_bars()  # no progress bars in redirected logs
    config = Config.from_dict(config_dict)
    build = build_streamed if config.data.streaming else build_entry
    try:
        build(config, vocab_state, Path(folder), content)
    except OSError as error:
        if error.errno in store.FULL_DISK:
            raise _full(Path(folder), error) from None
        raise


def _main(request: Path, reply: Path) -> int:
    config_dict, vocab_state, folder, content = pickle.loads(request.read_bytes())
    collect = _Collect()
    logger = logging.getLogger("seq2seq")
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    outcome: dict[str, Any] = {}
    try:
        _prepare(config_dict, vocab_state, folder, content)
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group: the parent says it once
        return INTERRUPTED
    except Seq2SeqError as error:  # bad input: the parent raises it again, with its message
        outcome = {"error": error}
    except Exception:  # a bug: its traceback, raised in the parent
        outcome = {"error": RuntimeError(f"preparing the corpus failed:\n{traceback.format_exc()}")}
    outcome["log"] = collect.records
    partial = reply.with_name(reply.name + ".partial")
    try:
        partial.write_bytes(pickle.dumps(outcome))
        os.replace(partial, reply)  # the parent sees a whole reply or none
    except OSError:
        partial.unlink(missing_ok=True)
        return WRITE_FAILED
    return 0


if __name__ == "__main__":
    from seq2seq.data.prepare import (
        _main as main,
    )  # the module under its own name, so Split pickles as seq2seq.data.prepare.Split

    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
