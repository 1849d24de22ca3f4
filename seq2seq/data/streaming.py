"""``data.streaming=true``: a Hugging Face dataset read as a stream into the corpus cache.

``datasets`` streams the training split (a hub id, or a local folder of parquet / JSON Lines
files, its splits named by the files as without streaming) in chunks of
:data:`~seq2seq.data.build.CHUNK` pairs, so the split is never held whole in memory nor copied
into ``datasets``' Arrow cache. SentencePiece must be trained before anything can be encoded,
so the stream is read twice:

1. each pair's filter decision (one byte a pair is kept), the source side hashed for the split's
   fingerprint, and SentencePiece's sample drawn in one pass
   (:class:`~seq2seq.data.vocab.VocabSample`, the draw reading the split whole makes too);
2. once SentencePiece is trained, the kept pairs encoded into the spool
   (:class:`~seq2seq.data.build.Spool`) and the target side hashed.

Both passes hash all they read: a stream that reads differently the second time is an error. The
entry written is the one reading the split whole writes (the same ids, lengths, decisions,
vocabulary and fingerprints), under the same cache key. The validation split is small: it is
streamed and kept whole.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import datasets
import sentencepiece as spm
from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

from seq2seq.config import Config, DataConfig
from seq2seq.data.build import CHUNK, Phases, Spool, log_filter, make_vocab, write_entry
from seq2seq.data.corpora import KEPT, decide, filter_report
from seq2seq.data.formats import first_line, local_dataset, pair_columns
from seq2seq.data.sources import corpus_root, describe, is_hub_id
from seq2seq.data.vocab import VocabSample
from seq2seq.errors import DataError

log = logging.getLogger(__name__)

STREAMABLE = "a folder of parquet or JSON Lines files (split by their names: train-*.parquet, validation.jsonl ...)"


class Stream:
    """The splits of a Hugging Face dataset, each read as chunks of (sources, targets)."""

    def __init__(self, cfg: DataConfig, revision: str | None):
        """``revision``: the hub commit to read (the one the training process checked), or None: the latest."""
        self.cfg = cfg
        root = corpus_root(cfg)
        local = local_dataset(cfg.files or "", root / cfg.name if root is not None else None)
        if local is not None:
            self.builder = _local_builder(local)
            self.where = f"{local} ({self.builder.name} files)"
        elif is_hub_id(cfg.files or ""):
            self.builder = _hub_builder(cfg, revision)
            config = f" ({cfg.hf_config})" if cfg.hf_config else ""
            self.where = f"hub dataset {cfg.files}{config} at commit {self.builder.hash}"
        else:
            raise DataError(
                f"data.files={cfg.files}: no such folder; data.streaming=true reads {STREAMABLE}, or a hub id"
            )

    def splits(self) -> list[str]:
        """The split names the dataset has (for messages)."""
        files = self.builder.config.data_files or {}
        return [str(name) for name in files] or [str(name) for name in self.builder.info.splits or {}]

    def size(self, split: str) -> int | None:
        """The split's pairs where the dataset's card says (a progress bar's total), else None."""
        info = (self.builder.info.splits or {}).get(split)
        return info.num_examples if info is not None and info.num_examples else None

    def chunks(self, split: str) -> Iterator[tuple[list[str], list[str]]]:
        """The split's pairs in corpus order, at most :data:`CHUNK` at a time."""
        names = self.splits()
        if names and split not in names:
            raise DataError(
                f"{self.where} has no split {split!r} (it has {', '.join(names)}); set data.train/valid/test"
            )
        where, columns = f"{self.where} split {split}", ()
        try:
            stream = self.builder.as_streaming_dataset(split=split)
            batches = stream.iter(batch_size=CHUNK)
            for batch in batches:
                if columns == ():  # the first chunk: which columns hold the pairs
                    columns = pair_columns(self.cfg, list(batch), stream.features or _features(batch), where)
                if columns is None:  # a translation column of {lang: text} dicts
                    pairs = batch["translation"]
                    yield [pair[self.cfg.src] for pair in pairs], [pair[self.cfg.tgt] for pair in pairs]
                else:
                    yield batch[columns[0]], batch[columns[1]]
        except DataError:
            raise
        except Exception as error:  # a damaged file, a lost connection: datasets and pyarrow raise many types
            raise DataError(f"could not read {where} ({first_line(error)})") from None

    def whole(self, split: str) -> tuple[list[str], list[str]]:
        """A small split (validation), read into memory."""
        src: list[str] = []
        tgt: list[str] = []
        for chunk_src, chunk_tgt in self.chunks(split):
            src.extend(chunk_src)
            tgt.extend(chunk_tgt)
        return src, tgt


def _features(batch: dict[str, list]) -> dict[str, dict | None]:
    """Column -> the keys of its first value where that is a dict (a stream whose types are not declared)."""
    return {name: dict.fromkeys(values[0]) if values and isinstance(values[0], dict) else None
            for name, values in batch.items()}  # fmt: skip


def _local_builder(path: Path) -> datasets.DatasetBuilder:
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        raise DataError(
            f"{path} was written by save_to_disk: it is Arrow files already, mapped (not loaded) when read whole; "
            f"set data.streaming=false for it (data.streaming=true reads {STREAMABLE}, or a hub id)"
        )
    try:
        return datasets.load_dataset_builder(str(path))  # the builder and splits reading it whole infers too
    except datasets.data_files.EmptyDatasetError:
        raise DataError(f"{path} holds no data files to stream; data.streaming=true reads {STREAMABLE}") from None
    except Exception as error:
        raise DataError(f"could not read {path} as a dataset folder ({first_line(error)})") from None


def _hub_builder(cfg: DataConfig, revision: str | None) -> datasets.DatasetBuilder:
    try:
        return datasets.load_dataset_builder(cfg.files, cfg.hf_config, revision=revision)
    except Exception as error:  # offline, unknown repo or config: datasets raises many types
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
        why = "HF_HUB_OFFLINE is set" if offline else first_line(error)
        raise DataError(
            f"could not stream {cfg.files!r}{f' ({cfg.hf_config})' if cfg.hf_config else ''} from the Hugging Face "
            f"hub ({why}); data.streaming=true reads from the hub while it prepares, or from {STREAMABLE}"
        ) from None


class Pass:
    """What one pass over the training split read: its pairs and a hash of them (the passes must agree)."""

    def __init__(self) -> None:
        self.pairs = 0
        self.digest = hashlib.sha256()

    def read(self, src: list[str], tgt: list[str]) -> tuple[bytes, bytes]:
        """Count and hash a chunk; its two sides as UTF-8 lines (what the split's fingerprint hashes)."""
        lines = ["".join(f"{text}\n" for text in side).encode("utf-8") for side in (src, tgt)]
        self.pairs += len(src)
        self.digest.update(lines[0] + b"\0" + lines[1] + b"\0")
        return lines[0], lines[1]


def build_streamed(config: Config, vocab_state: dict | None, folder: Path, content: dict | None) -> None:
    """Write the entry for ``config``'s corpus into ``folder``, streaming its training split twice."""
    data, phases, lines = config.data, Phases(), []
    stream = Stream(data, content["revision"] if content and "hub" in content else None)
    lines.append(f"{data.name}/{data.src}-{data.tgt} train: streamed from {stream.where}; known by {describe(content)}")
    log.info(lines[-1])
    valid_texts = stream.whole(data.valid)  # never filtered; read now, so that a bad split fails early
    sample = VocabSample(data.vocab) if vocab_state is None else None
    decisions, first, identical = bytearray(), Pass(), 0
    fingerprint = hashlib.sha256()  # as text_fingerprint: every source line, then every target line
    bar = tqdm(
        total=stream.size(data.train), desc="pass 1 of 2: filter, sample", unit=" pairs", unit_scale=True, disable=None
    )
    with bar:
        for src, tgt in stream.chunks(data.train):
            start = len(decisions)
            identical += decide(zip(src, tgt), data.filter, decisions)
            fingerprint.update(first.read(src, tgt)[0])
            if sample is not None:
                kept = [i for i, d in enumerate(decisions[start:]) if d == KEPT]
                sample.add([src[i] for i in kept], [tgt[i] for i in kept])
            bar.update(len(src))
    fingerprint.update(b"\0")
    report = filter_report(decisions, identical)
    log_filter(config, report, lines)
    phases.done("read+filter+sample")
    models = (vocab_state["src_model"], vocab_state["tgt_model"]) if vocab_state else sample.train()  # type: ignore[union-attr]
    phases.done("SentencePiece")
    procs = [spm.SentencePieceProcessor(model_proto=m) for m in models]
    second = Pass()

    def kept_pairs() -> Iterator[tuple[list[str], list[str]]]:
        row = 0
        for src, tgt in stream.chunks(data.train):
            fingerprint.update(second.read(src, tgt)[1])
            kept = [i for i, d in enumerate(decisions[row : row + len(src)]) if d == KEPT]
            row += len(src)
            yield [src[i] for i in kept], [tgt[i] for i in kept]

    with Spool(folder) as spool:
        counts = spool.encode_chunks(procs, kept_pairs(), report.kept, count=True)
        if (second.pairs, second.digest.digest()) != (first.pairs, first.digest.digest()):
            raise DataError(
                f"{stream.where} split {data.train} read differently the second time ({first.pairs:,} pairs, then "
                f"{second.pairs:,}): it changed while it was being prepared; start again once it is complete"
            )
        fingerprint.update(b"\0")
        vocab = make_vocab(models, counts, vocab_state, lines)
        phases.done("read+encode")
        train_fingerprint = {"pairs": first.pairs, "sha256": fingerprint.hexdigest()[:16]}
        manifest = {"content": content, "train_fingerprint": train_fingerprint, "log": lines}
        write_entry(folder, spool, vocab, decisions, valid_texts, manifest, phases)
    log.info("prepared %s/%s-%s (streamed) in %s", data.name, data.src, data.tgt, phases)
