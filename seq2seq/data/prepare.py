"""A run's training and validation data, prepared in a short-lived child process.

Loading through ``datasets`` imports pyarrow, pandas and the hub client: ``import datasets``
alone keeps about 0.1 GB resident, and a training process would carry it for its
whole life. :func:`prepare_data` therefore loads, filters and encodes the corpus (training or
loading SentencePiece on the way) in a child Python process (``python -m seq2seq.data.prepare``, so no
script is re-imported, as multiprocessing's spawn would) and takes back only what training needs:
the vocabulary, each sentence's ids as a compact ``array`` (4 bytes a token instead of a Python
int object) and the validation texts. A :class:`~seq2seq.errors.DataError` in the child (a
missing or misaligned corpus, say) is raised again here, and the child's log lines are logged
here, so nothing looks different to the caller.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seq2seq.config import Config
from seq2seq.errors import DataError, Seq2SeqError

log = logging.getLogger(__name__)

WRITE_FAILED = 3  # the child's exit status when it cannot write its reply


@dataclass
class Split:
    src_ids: list[array]  # per sentence, array("i") of token ids (no EOS)
    tgt_ids: list[array]
    src_texts: list[str] = field(default_factory=list)  # raw texts: kept for validation only
    tgt_texts: list[str] = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)  # the split as loaded: {"pairs", "sha256"} (resume checks it)


def prepare_data(config: Config, vocab_state: dict | None = None) -> tuple[dict, Split, Split]:
    """``(vocabulary state, training split, validation split)`` for ``config``, from a child process.

    ``vocab_state`` (a resumed run's) skips SentencePiece training; the returned state goes to
    :meth:`seq2seq.data.vocab.Vocab.from_state_dict`.
    """
    package_root = str(Path(__file__).resolve().parents[2])  # the folder that holds seq2seq/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="seq2seq-corpus-") as tmp:
        request, reply = Path(tmp, "request.pkl"), Path(tmp, "reply.pkl")
        request.write_bytes(pickle.dumps((config.to_dict(), vocab_state)))
        done = subprocess.run([sys.executable, "-m", "seq2seq.data.prepare", str(request), str(reply)], env=env)
        if done.returncode == WRITE_FAILED:
            raise DataError(
                f"the process preparing the corpus could not write its result into {tmp} (disk full, quota or "
                "file-size limit?); free space there (or point TMPDIR elsewhere) and start again"
            )
        if not reply.exists():
            raise DataError(f"the process preparing the corpus exited with status {done.returncode} before it finished")
        outcome = pickle.loads(reply.read_bytes())
    if "error" in outcome:
        raise outcome["error"]
    for record in outcome["log"]:
        logging.getLogger(record.name).handle(record)
    return outcome["vocab"], outcome["train"], outcome["valid"]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args, record.exc_info = record.getMessage(), None, None  # picklable
        self.records.append(record)


def _prepare(config_dict: dict[str, Any], vocab_state: dict | None):
    """The child's work (imports ``datasets`` here, never in the training process)."""
    import datasets

    from seq2seq.data.corpora import filter_pairs, load_split
    from seq2seq.data.longinputs import long_examples
    from seq2seq.data.vocab import Vocab, build_vocab

    collect = _Collect()
    logger = logging.getLogger("seq2seq")
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    config = Config.from_dict(config_dict)
    data = config.data
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()  # no progress bars in redirected logs
    raw_train = load_split(data, data.train)
    train_fingerprint = fingerprint(raw_train)
    train_ds, report = filter_pairs(raw_train, data.filter)
    log.info("%s/%s-%s train: %s", data.name, data.src, data.tgt, report)
    if report.identical > report.total / 2:  # a column read for both sides, or an untranslated corpus
        log.warning(
            "%s/%s-%s train: %.0f%% of the pairs (%s of %s) have a source identical to its target, and a model "
            "trained on them learns to copy; check data.src, data.tgt and data.columns (one column read for both?)",
            data.name,
            data.src,
            data.tgt,
            100 * report.identical / report.total,
            f"{report.identical:,}",
            f"{report.total:,}",
        )
    if vocab_state is None:
        vocab = build_vocab(list(train_ds["src"]), list(train_ds["tgt"]), data.vocab)
    else:
        vocab = Vocab.from_state_dict(vocab_state)
    log.info("vocabulary: %d source and %d target types", len(vocab.src), len(vocab.tgt))
    long = data.long_examples
    if long.fraction > 0:  # after SentencePiece, which learns from the natural sentences
        src, tgt, long_report = long_examples(
            train_ds["src"], train_ds["tgt"], long.fraction, long.max_k, long.seed, data.filter.max_len
        )
        train_ds = datasets.Dataset.from_dict({"src": src, "tgt": tgt})
        log.info("%s/%s-%s train: %s", data.name, data.src, data.tgt, long_report)
    valid_ds = load_split(data, data.valid)  # never filtered
    valid_fingerprint = fingerprint(valid_ds)  # before the cap, which a resumed run may change
    if config.train.valid_max_sentences is not None:
        valid_ds = valid_ds.select(range(min(config.train.valid_max_sentences, valid_ds.num_rows)))
    train = _encode(train_ds, vocab, keep_texts=False)
    valid = _encode(valid_ds, vocab, keep_texts=True)
    train.fingerprint, valid.fingerprint = train_fingerprint, valid_fingerprint
    return {"vocab": vocab.state_dict(), "train": train, "valid": valid, "log": collect.records}


def fingerprint(ds) -> dict:
    """What identifies a split's content wherever it lives: its number of pairs and a hash of its text."""
    digest = hashlib.sha256()
    for column in ("src", "tgt"):
        for line in ds[column]:
            digest.update(line.encode("utf-8") + b"\n")
        digest.update(b"\0")
    return {"pairs": ds.num_rows, "sha256": digest.hexdigest()[:16]}


def _encode(ds, vocab, keep_texts: bool) -> Split:
    def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        return {"src_ids": vocab.encode_src(batch["src"]), "tgt_ids": vocab.encode_tgt(batch["tgt"])}

    encoded = ds.map(encode, batched=True, batch_size=4096, new_fingerprint=f"{ds._fingerprint}-{vocab.fingerprint}")
    split = Split([array("i", ids) for ids in encoded["src_ids"]], [array("i", ids) for ids in encoded["tgt_ids"]])
    if keep_texts:
        split.src_texts, split.tgt_texts = list(encoded["src"]), list(encoded["tgt"])
    return split


def _main(request: Path, reply: Path) -> int:
    config_dict, vocab_state = pickle.loads(request.read_bytes())
    try:
        outcome = _prepare(config_dict, vocab_state)
    except Seq2SeqError as error:  # bad input: the parent raises it again, with its message
        outcome = {"error": error}
    except Exception:  # a bug: its traceback, raised in the parent
        outcome = {"error": RuntimeError(f"preparing the corpus failed:\n{traceback.format_exc()}")}
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
