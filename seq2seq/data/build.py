"""Preparing a corpus cache entry (:mod:`seq2seq.data.store`): the child process's work.

Phases, each with a progress bar on a terminal and its time in the log: **read** the training
split (``datasets``), **filter** it, train **SentencePiece** on a seeded sample
(``data.vocab.sample``), **encode** both sides in chunks on every core (SentencePiece ids spooled
to disk, the pieces each side uses counted on the way, so no second pass over the text builds
the vocabulary), and **write** the model ids, offsets and filter decisions, hashed as they go.
Nothing here holds the encoded corpus in memory. With ``data.streaming=true``,
:mod:`seq2seq.data.streaming` reads the split in two passes over a stream instead and writes the
same entry through the same spool and writer.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

from seq2seq.config import Config
from seq2seq.data.store import Writer
from seq2seq.data.vocab import Vocab, train_models

log = logging.getLogger(__name__)

CHUNK = 50_000  # pairs encoded (and written) at a time


class Phases:
    """Times the preparation's phases for the log line that ends it."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._start = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = now - self._start
        self._start = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.times.items())


def text_fingerprint(src: Sequence[str], tgt: Sequence[str]) -> dict:
    """A split's identity wherever it lives: its pairs and a hash of its text (what resume compares)."""
    digest = hashlib.sha256()
    for column in (src, tgt):
        for line in column:
            digest.update(line.encode("utf-8") + b"\n")
        digest.update(b"\0")
    return {"pairs": len(src), "sha256": digest.hexdigest()[:16]}


def build_entry(config: Config, vocab_state: dict | None, folder: Path, content: dict | None) -> None:
    """Write the entry for ``config``'s corpus, read whole, into ``folder`` (a temporary folder the caller
    renames); a streamed corpus is :func:`seq2seq.data.streaming.build_streamed`'s."""
    from seq2seq.data.corpora import filter_decisions, load_split, pair_texts

    data, phases, lines = config.data, Phases(), []
    src, tgt = pair_texts(load_split(data, data.train))
    train_fingerprint = text_fingerprint(src, tgt)
    valid_texts = pair_texts(load_split(data, data.valid))  # never filtered; read now: a bad file fails early
    phases.done("read")
    decisions, report = filter_decisions(src, tgt, data.filter)
    log_filter(config, report, lines)
    kept = [i for i, d in enumerate(decisions) if d == 0]
    src, tgt = [src[i] for i in kept], [tgt[i] for i in kept]
    phases.done("filter")
    models = (vocab_state["src_model"], vocab_state["tgt_model"]) if vocab_state else train_models(src, tgt, data.vocab)
    phases.done("SentencePiece")
    procs = [spm.SentencePieceProcessor(model_proto=m) for m in models]
    with Spool(folder) as spool:
        counts = spool.encode(procs, src, tgt, count=True)
        vocab = make_vocab(models, counts, vocab_state, lines)
        if data.long_examples.fraction > 0:  # after the vocabulary, which comes from the natural sentences
            src, tgt = _long_examples(config, src, tgt, lines)
            spool.encode(procs, src, tgt, count=False)
        del src, tgt
        phases.done("encode")
        manifest = {"content": content, "train_fingerprint": train_fingerprint, "log": lines}
        write_entry(folder, spool, vocab, decisions, valid_texts, manifest, phases)
    log.info("prepared %s/%s-%s in %s", data.name, data.src, data.tgt, phases)


def log_filter(config: Config, report, lines: list[str]) -> None:
    """The training split's filter counts, logged and kept for the manifest; a warning for a copying corpus."""
    data = config.data
    lines.append(f"{data.name}/{data.src}-{data.tgt} train: {report}")
    log.info(lines[-1])
    _warn_identical(config, report)


def make_vocab(models: Sequence[bytes], counts: list[np.ndarray], vocab_state: dict | None, lines: list[str]) -> Vocab:
    """The vocabulary: a resumed run's, or the pieces each side used (``counts``), logged."""
    if vocab_state is None:
        vocab = Vocab(*models, *(np.flatnonzero(c).tolist() for c in counts))
    else:
        vocab = Vocab.from_state_dict(vocab_state)
    lines.append(f"vocabulary: {len(vocab.src)} source and {len(vocab.tgt)} target types")
    log.info(lines[-1])
    return vocab


def write_entry(
    folder: Path,
    spool: Spool,
    vocab: Vocab,
    decisions: bytearray,
    valid_texts: tuple[list, list],
    manifest: dict,
    phases: Phases,
) -> None:
    """Write the spooled ids, the decisions, the vocabulary and the validation split, then the manifest."""
    writer = Writer(folder)
    try:
        spool.write(writer, vocab, decisions)
        phases.done("write")
        valid, valid_fingerprint = _valid(vocab, *valid_texts)
        manifest = {**manifest, "valid_fingerprint": valid_fingerprint, "vocab_fingerprint": vocab.fingerprint}
        writer.finish({"vocab": vocab.state_dict(), "valid": valid}, manifest)
    finally:
        writer.close()


class Spool:
    """SentencePiece ids of both sides, spooled to disk chunk by chunk, with each sentence's length."""

    def __init__(self, folder: Path):
        self.paths = [folder / "src.spm", folder / "tgt.spm"]
        self.lengths: list[np.ndarray] = []

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)

    def encode(self, procs: list, src: Sequence[str], tgt: Sequence[str], count: bool) -> list[np.ndarray]:
        """Encode both sides into the spool files; with ``count``, how often each piece occurs per side."""
        chunks = ((src[start : start + CHUNK], tgt[start : start + CHUNK]) for start in range(0, len(src), CHUNK))
        return self.encode_chunks(procs, chunks, len(src), count)

    def encode_chunks(
        self, procs: list, chunks: Iterable[tuple[Sequence[str], Sequence[str]]], total: int | None, count: bool
    ) -> list[np.ndarray]:
        """:meth:`encode` for pairs that come in chunks (``total`` pairs in all, if known)."""
        counts = [np.zeros(proc.get_piece_size(), dtype=np.int64) for proc in procs]
        lengths: list[list[np.ndarray]] = [[], []]
        threads = os.cpu_count() or 1
        with open(self.paths[0], "wb") as out_src, open(self.paths[1], "wb") as out_tgt:
            bar = tqdm(total=total, desc="encode", unit=" pairs", unit_scale=True, disable=None)
            for chunk in chunks:
                for side, (proc, texts, out) in enumerate(zip(procs, chunk, (out_src, out_tgt))):
                    pieces = proc.encode(list(texts), num_threads=threads)
                    sizes = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
                    lengths[side].append(sizes)
                    flat = np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.int32, count=int(sizes.sum()))
                    out.write(flat.tobytes())
                    if count:
                        counts[side] += np.bincount(flat, minlength=len(counts[side]))
                bar.update(len(chunk[0]))
            bar.close()
        self.lengths = [np.concatenate(parts) if parts else np.zeros(0, np.int64) for parts in lengths]
        return counts

    def write(self, writer: Writer, vocab: Vocab, decisions: bytearray) -> None:
        """Model ids (SentencePiece ids through each side's table), offsets and filter decisions."""
        tables = [np.asarray(vocab.src.from_spm, dtype=np.int32), np.asarray(vocab.tgt.from_spm, dtype=np.int32)]
        writer.append("decisions", np.frombuffer(bytes(decisions), dtype=np.uint8))
        for side, name in enumerate(("src", "tgt")):
            writer.append(f"{name}_offsets", np.concatenate([[0], np.cumsum(self.lengths[side])]))
        ids = [
            np.memmap(p, dtype=np.int32, mode="r") if p.stat().st_size else np.zeros(0, np.int32) for p in self.paths
        ]
        step = CHUNK * 32
        total = sum(len(side) for side in ids)
        with tqdm(total=total, desc="write", unit=" tokens", unit_scale=True, disable=None) as bar:
            for side, name in enumerate(("src", "tgt")):
                for start in range(0, len(ids[side]), step):
                    piece = ids[side][start : start + step]
                    writer.append(f"{name}_ids", tables[side][piece])
                    writer.chunk_done()
                    bar.update(len(piece))
        for side, name in enumerate(("src", "tgt")):
            if not len(ids[side]):
                writer.append(f"{name}_ids", np.zeros(0, np.int32))


def _long_examples(config: Config, src: list[str], tgt: list[str], lines: list[str]) -> tuple[list[str], list[str]]:
    from seq2seq.data.longinputs import long_examples

    data, long = config.data, config.data.long_examples
    src, tgt, report = long_examples(src, tgt, long.fraction, long.max_k, long.seed, data.filter.max_len)
    lines.append(f"{data.name}/{data.src}-{data.tgt} train: {report}")
    log.info(lines[-1])
    return src, tgt


def _valid(vocab: Vocab, src: list[str], tgt: list[str]) -> tuple[dict, dict]:
    """The whole validation split, encoded, with its texts (the run caps it: ``train.valid_max_sentences``)."""
    split = {"src_ids": vocab.encode_src(src), "tgt_ids": vocab.encode_tgt(tgt), "src_texts": src, "tgt_texts": tgt}
    return split, text_fingerprint(src, tgt)


def _warn_identical(config: Config, report) -> None:
    data = config.data
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
