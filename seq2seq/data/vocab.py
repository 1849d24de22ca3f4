"""SentencePiece subwords and the per-side vocabularies the model's embeddings index.

SentencePiece (joint or one model per side) is trained on the training split only and cached
by a hash of (training text, options). With a joint model each side still gets its own, smaller
vocabulary: only the pieces that occur on that side of the training data (plus the four special
symbols) get an embedding row and an output unit, so a joint 8k model gives the target side
a softmax over roughly half as many types. The SentencePiece model travels inside every
checkpoint as bytes (:meth:`Vocab.state_dict`), so a checkpoint alone can translate.

Ids: ``pad 0, unk 1, bos 2, eos 3`` in SentencePiece and in the model's own vocabularies.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
from tqdm import tqdm  # not tqdm.auto: in a notebook without ipywidgets it warns on import

from seq2seq.config import VocabConfig
from seq2seq.errors import DataError

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # the special ids, the same in SentencePiece and in every SideVocab
N_SPECIALS = 4
SAMPLE_SEED = 1  # which sentences SentencePiece learns from when the corpus has more than data.vocab.sample
SAMPLE_CHUNK = 50_000  # sentences added to a sample at a time


def cache_dir() -> Path:
    return Path(os.environ.get("SEQ2SEQ_CACHE_DIR", Path.home() / ".cache" / "seq2seq"))


class SideVocab:
    """The pieces one side of the corpus uses: SentencePiece id <-> model id."""

    def __init__(self, spm_ids: Sequence[int], spm_size: int):
        self.to_spm = list(range(N_SPECIALS)) + [i for i in spm_ids if i >= N_SPECIALS]
        self.from_spm = [UNK] * spm_size
        for model_id, spm_id in enumerate(self.to_spm):
            self.from_spm[spm_id] = model_id

    def __len__(self) -> int:
        return len(self.to_spm)


class Vocab:
    """Source and target subword vocabularies backed by SentencePiece."""

    def __init__(self, src_model: bytes, tgt_model: bytes, src_pieces: Sequence[int], tgt_pieces: Sequence[int]):
        self._models = (src_model, tgt_model)
        self._src_spm = spm.SentencePieceProcessor(model_proto=src_model)
        self._tgt_spm = self._src_spm if tgt_model == src_model else spm.SentencePieceProcessor(model_proto=tgt_model)
        self.src = SideVocab(src_pieces, self._src_spm.get_piece_size())
        self.tgt = SideVocab(tgt_pieces, self._tgt_spm.get_piece_size())

    @property
    def joint(self) -> bool:
        """One SentencePiece model for both sides (``data.vocab.joint``): their ids name the same pieces."""
        return self._models[0] == self._models[1]

    @property
    def fingerprint(self) -> str:
        """A short hash of the models and vocabularies (for caching encoded datasets)."""
        digest = hashlib.sha256(self._models[0] + self._models[1])
        digest.update(json.dumps([self.src.to_spm, self.tgt.to_spm]).encode())
        return digest.hexdigest()[:16]

    def encode_src(self, texts: Sequence[str]) -> list[list[int]]:
        return _encode(self._src_spm, self.src, texts)

    def encode_tgt(self, texts: Sequence[str]) -> list[list[int]]:
        return _encode(self._tgt_spm, self.tgt, texts)

    def decode_tgt(self, ids: Iterable[int]) -> str:
        """Model ids -> detokenised text (specials dropped)."""
        return self._tgt_spm.decode([self.tgt.to_spm[i] for i in ids if i >= N_SPECIALS or i == UNK])

    def src_pieces(self, ids: Iterable[int]) -> list[str]:
        return [self._src_spm.id_to_piece(self.src.to_spm[i]) for i in ids]

    def tgt_pieces(self, ids: Iterable[int]) -> list[str]:
        return [self._tgt_spm.id_to_piece(self.tgt.to_spm[i]) for i in ids]

    def state_dict(self) -> dict:
        """Plain bytes and lists: safe for ``torch.load(weights_only=True)``."""
        return {
            "src_model": self._models[0],
            "tgt_model": self._models[1],
            "src_pieces": self.src.to_spm,
            "tgt_pieces": self.tgt.to_spm,
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> Vocab:
        return cls(state["src_model"], state["tgt_model"], state["src_pieces"], state["tgt_pieces"])


def _encode(model: spm.SentencePieceProcessor, side: SideVocab, texts: Sequence[str]) -> list[list[int]]:
    table = side.from_spm
    return [[table[i] for i in ids] for ids in model.encode(list(texts))]


def _train_spm(texts: Sequence[str], cfg: VocabConfig) -> bytes:
    """Train one SentencePiece model in memory; the cache key covers the text and every option."""
    options = dict(
        model_type=cfg.model_type,
        vocab_size=cfg.size,
        character_coverage=cfg.character_coverage,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        hard_vocab_limit=True,  # a size the text cannot support is an error, not a silently smaller model
    )
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\n")
    path = cache_dir() / "spm" / f"{digest.hexdigest()[:24]}.model"
    if path.is_file():
        log.info("SentencePiece model from cache %s", path)
        return path.read_bytes()
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(tqdm(texts, desc="SentencePiece: sentences", unit=" lines", disable=None)),
            model_writer=buffer,
            minloglevel=2,
            num_threads=os.cpu_count() or 1,
            input_sentence_size=max(2_000_000, len(texts)),  # all it is given: the sample (sample_sentences)
            shuffle_input_sentence=True,
            **options,
        )
    except RuntimeError as error:
        most = re.search(r"value <= (\d+)", str(error))
        limit = f" (at most {most.group(1)} pieces)" if most else f" ({str(error).splitlines()[0][:200]})"
        raise DataError(
            f"data.vocab.size={cfg.size} is more than the training split supports{limit}; lower data.vocab.size"
        ) from None
    model = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(model)
    tmp.replace(path)  # atomic: concurrent runs never read a half-written model
    log.info(
        "trained SentencePiece %s %d (%s) -> %s", cfg.model_type, cfg.size, "joint" if cfg.joint else "per side", path
    )
    return model


class SentenceSample:
    """A seeded sample of at most ``size`` sentences from one or more sides, drawn in one pass.

    Each sentence gets a random key (a generator per side seeded with ``(seed, side)``, so the
    keys do not depend on how the sentences arrive in chunks); the sample is the ``size`` smallest
    keys: a uniform draw without replacement that needs neither the corpus's length nor a second
    look at it, and holds at most about ``1.25 * size`` sentences on the way. The same sentences
    in the same order give the same sample, read whole or as a stream. ``size`` 0 keeps every one.
    """

    def __init__(self, size: int, sides: int, seed: int = SAMPLE_SEED):
        self.size = size
        self._rngs = [np.random.default_rng([seed, side]) for side in range(sides)]
        self._seen = [0] * sides
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (keys, sides, rows) as added
        self._texts: list[str] = []
        self._threshold = np.inf  # keys above the size-th smallest so far can no longer be drawn

    def add(self, side: int, texts: Sequence[str]) -> None:
        """The next sentences of ``side``, in corpus order."""
        keys = self._rngs[side].random(len(texts))
        rows = np.flatnonzero(keys <= self._threshold) if self.size else np.arange(len(texts))
        self._parts.append((keys[rows], np.full(len(rows), side), rows + self._seen[side]))
        self._texts.extend(texts[i] for i in rows.tolist())
        self._seen[side] += len(texts)
        if self.size and len(self._texts) > self.size + max(self.size // 4, 1000):
            self._keep(self.size)

    def _columns(self) -> tuple:
        if len(self._parts) != 1:
            self._parts = [tuple(np.concatenate(column) for column in zip(*self._parts))] if self._parts else []
        return self._parts[0] if self._parts else (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def _keep(self, n: int) -> None:
        """Keep the ``n`` smallest keys (ties: side, then row, so the draw is the same every time)."""
        keys, sides, rows = self._columns()
        chosen = np.lexsort((rows, sides, keys))[:n]
        self._parts = [(keys[chosen], sides[chosen], rows[chosen])]
        self._texts = [self._texts[i] for i in chosen.tolist()]
        self._threshold = keys[chosen].max()

    def sentences(self) -> list[str]:
        """The sample: each side's drawn sentences in corpus order, one side after another."""
        if self.size and len(self._texts) > self.size:
            self._keep(self.size)
        _, sides, rows = self._columns()
        return [self._texts[i] for i in np.lexsort((rows, sides)).tolist()]


def sample_sentences(sides: Sequence[Sequence[str]], size: int, seed: int = SAMPLE_SEED) -> list[str]:
    """The sentences of ``sides`` (one list after another) SentencePiece learns from.

    Every sentence when there are at most ``size`` (or ``size`` is 0), in order, so a small corpus
    trains the model it always did; else the :class:`SentenceSample` of ``size`` drawn with
    ``seed``, in corpus order: the same corpus and settings give the same model, read whole or
    streamed, and a corpus of millions of pairs trains in a minute instead of several
    (``data.vocab.sample``).
    """
    sample = SentenceSample(size, len(sides), seed)
    for side, texts in enumerate(sides):
        for start in range(0, len(texts), SAMPLE_CHUNK):
            sample.add(side, texts[start : start + SAMPLE_CHUNK])
    return sample.sentences()


class VocabSample:
    """What SentencePiece learns from, drawn in one pass over the training pairs (:class:`SentenceSample`):
    one sample of both sides for a joint model, else one per side, as :func:`sample_sentences` draws them."""

    def __init__(self, cfg: VocabConfig):
        self.cfg = cfg
        self.samples = [SentenceSample(cfg.sample, 2 if cfg.joint else 1) for _ in range(1 if cfg.joint else 2)]

    def add(self, src: Sequence[str], tgt: Sequence[str]) -> None:
        """The next training pairs (kept by the filter), in corpus order."""
        if self.cfg.joint:
            self.samples[0].add(0, src)
            self.samples[0].add(1, tgt)
        else:
            self.samples[0].add(0, src)
            self.samples[1].add(0, tgt)

    def train(self) -> tuple[bytes, bytes]:
        """The source and target SentencePiece models (one and the same when joint), trained or cached."""
        models = [_train_spm(sample.sentences(), self.cfg) for sample in self.samples]
        return (models[0], models[0]) if self.cfg.joint else (models[0], models[1])


def train_models(src_texts: Sequence[str], tgt_texts: Sequence[str], cfg: VocabConfig) -> tuple[bytes, bytes]:
    """The source and target SentencePiece models (one and the same when ``cfg.joint``), trained or cached."""
    sample = VocabSample(cfg)
    for start in range(0, len(src_texts), SAMPLE_CHUNK):
        sample.add(src_texts[start : start + SAMPLE_CHUNK], tgt_texts[start : start + SAMPLE_CHUNK])
    return sample.train()


def build_vocab(src_texts: Sequence[str], tgt_texts: Sequence[str], cfg: VocabConfig) -> Vocab:
    """Train (or load from cache) SentencePiece on the training texts and build both side vocabularies."""
    src_model, tgt_model = train_models(src_texts, tgt_texts, cfg)
    src_proc = spm.SentencePieceProcessor(model_proto=src_model)
    tgt_proc = spm.SentencePieceProcessor(model_proto=tgt_model)
    src_used = sorted({i for ids in src_proc.encode(list(src_texts)) for i in ids})
    tgt_used = sorted({i for ids in tgt_proc.encode(list(tgt_texts)) for i in ids})
    return Vocab(src_model, tgt_model, src_used, tgt_used)
