"""The configuration schema: plain dataclasses, checked once at start-up.

The defaults of every option are the dataclass fields below, written once: the command line's
Hydra registers ``model`` and ``train`` from them (:mod:`seq2seq.overrides`), next to the presets
in ``configs/`` (corpora, attention wirings). Hydra composes those into a nested dict, and
:func:`Config.from_dict` turns that dict into these dataclasses and rejects unknown keys, wrong
types and out-of-range values with the key's dotted name in the message. Nothing in the library
imports Hydra; the entry points (``train.py``, the scripts) and the tests compose.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from seq2seq.errors import ConfigError
from seq2seq.model_config import (  # noqa: F401  (re-exported: the model sections belong to the schema)
    ATTENTION_TYPES,
    POSITIONS,
    SCORES,
    AttentionConfig,
    ModelConfig,
    TransformerConfig,
)
from seq2seq.model_config import require as _require

PRECISIONS = ("auto", "fp32", "bf16")  # train.precision, and decoding's --precision
DEVICES = r"auto|cpu|mps|cuda(:\d+)?"  # train.device, and decoding's --device
# what the LSTM's attention settings say with model=transformer (here and in seq2seq.overrides)
TRANSFORMER_ATTENTION = (
    "model=transformer attends with scaled dot products in every layer: set model.heads, model.positions"
)


@dataclass
class VocabConfig:
    size: int = 8000
    model_type: str = "bpe"  # bpe | unigram
    joint: bool = True  # one SentencePiece model for both sides
    character_coverage: float = 1.0
    sample: int = 1_000_000  # SentencePiece learns from a seeded sample of this many sentences (0: every one)

    def check(self) -> None:
        _require(self.size >= 16, "data.vocab.size", self.size, "at least 16")
        _require(self.sample >= 0, "data.vocab.sample", self.sample, "0 (every sentence) or a number of sentences")
        _require(self.model_type in ("bpe", "unigram"), "data.vocab.model_type", self.model_type, "bpe or unigram")
        _require(
            0.9 <= self.character_coverage <= 1.0,
            "data.vocab.character_coverage",
            self.character_coverage,
            "in [0.9, 1]",
        )


@dataclass
class FilterConfig:
    """Applied to the training split only; validation and test sets are never filtered."""

    max_len: int = 80  # whitespace words, either side
    max_ratio: float = 3.0  # longer side / shorter side, in words
    ratio_min_len: int = 5  # the ratio test only applies once a side has this many words

    def check(self) -> None:
        _require(self.max_len >= 1, "data.filter.max_len", self.max_len, "at least 1")
        _require(self.max_ratio >= 1.0, "data.filter.max_ratio", self.max_ratio, "at least 1")


@dataclass
class LongExamplesConfig:
    """Training-time concatenation (:func:`seq2seq.data.longinputs.long_examples`); the training split only."""

    fraction: float = 0.0  # share of training pairs joined with 1 ... max_k - 1 random others (0: off)
    max_k: int = 8  # the most sentences one example joins
    seed: int = 1  # which pairs are joined: part of the data, so a resumed run sees the same examples

    def check(self) -> None:
        _require(0.0 <= self.fraction <= 1.0, "data.long_examples.fraction", self.fraction, "in [0, 1]")
        _require(2 <= self.max_k <= 16, "data.long_examples.max_k", self.max_k, "2 to 16 sentences")


@dataclass
class HubConfig:
    path: str = ""  # e.g. bentrevett/multi30k
    splits: dict[str, str] = field(default_factory=dict)  # local split name -> hub split name


@dataclass
class SplitConfig:
    """How a corpus that is one file is cut into train/valid/test (:func:`seq2seq.data.formats.split_rows`)."""

    valid: float = 1000  # pairs (1 or more) or a fraction of all pairs (under 1)
    test: float = 1000
    seed: int = 1
    MEANING: typing.ClassVar[str] = (  # where data.split is given one value
        "valid and test: a number of pairs (1, 2, ...) or a fraction of all pairs in (0, 1), "
        "e.g. data.split.valid=0.05 data.split.test=0.05"
    )

    def check(self) -> None:
        for key in ("valid", "test"):
            value = getattr(self, key)
            _require(
                0 < value < 1 or (value >= 1 and value == int(value)),
                f"data.split.{key}",
                value,
                "a number of pairs (1, 2, ...) or a fraction in (0, 1)",
            )


DATA_FORMATS = ("text", "tsv", "csv", "jsonl", "hf")


@dataclass
class DataConfig:
    name: str = "multi30k"  # folder under the data root
    src: str = "de"
    tgt: str = "en"
    root: str | None = None  # corpus root; overrides $SEQ2SEQ_DATA_DIR
    train: str = "train"
    valid: str = "val"
    test: list[str] = field(default_factory=list)
    hub: HubConfig | None = None
    vocab: VocabConfig = field(default_factory=VocabConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    long_examples: LongExamplesConfig = field(default_factory=LongExamplesConfig)
    # the corpus's shape (seq2seq.data.formats): text = a folder of {split}.{lang} files (name under root)
    format: str = "text"  # text | tsv | csv | jsonl | hf
    files: str | None = None  # tsv/csv/jsonl: a file, or one per split (pairs.*.tsv); hf: hub id or folder
    columns: dict[str, str | None] = field(default_factory=dict)  # src/tgt (or a language) -> column name or index
    header: bool | None = None  # tsv/csv: the first line names the columns (default: csv yes, tsv no)
    hf_config: str | None = None  # hf: the hub dataset's config name (wmt14: de-en)
    split: SplitConfig = field(default_factory=SplitConfig)  # one file with no splits: what is held out
    streaming: bool = False  # hf: read the training split as a stream, chunk by chunk, into the corpus cache

    def check(self) -> None:
        _require(self.src != self.tgt, "data.tgt", self.tgt, "a language other than data.src")
        _require(self.format in DATA_FORMATS, "data.format", self.format, ", ".join(DATA_FORMATS))
        if self.format != "text" and not self.files:
            raise ConfigError(f"data.format={self.format} needs data.files: the file (or hub id, or folder) to read")
        if self.streaming and self.format != "hf":
            raise ConfigError(
                f"data.streaming=true streams a Hugging Face dataset (data=hf: a hub id or a folder of parquet / JSON "
                f"Lines files), but data.format={self.format}; set data.streaming=false, which reads this corpus whole"
            )
        if self.streaming and self.long_examples.fraction > 0:
            raise ConfigError(
                "data.long_examples joins random training pairs, which needs the whole split in memory; with "
                "data.streaming=true set data.long_examples.fraction=0"
            )
        self.split.check()
        self.vocab.check()
        self.filter.check()
        self.long_examples.check()


@dataclass
class TrainConfig:
    seed: int = 1234
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    precision: str = "auto"  # auto (bf16 on a CPU that has it natively, else fp32) | fp32 | bf16 (autocast)
    batch_tokens: int = 2000  # padded tokens per batch, the larger of source and target
    pad_to_multiple: int = 4  # round padded lengths up to this: few batch shapes, the same every epoch
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    clip_grad_norm: float = 1.0
    ema: float | None = 0.999  # validate, keep and translate a moving average of the weights; None: off
    label_smoothing: float = 0.1
    teacher_forcing: float = 1.0  # probability of feeding the reference token
    scheduler: str = "plateau"  # plateau | budget | warmup | constant | auto (budget if bounded, else plateau)
    lr_factor: float = 0.5  # plateau: multiply the LR by this ...
    lr_patience: int = 2  # ... after this many validations without BLEU improvement
    min_lr: float = 1e-5
    warmup_steps: int | None = None  # linear warmup; unset: 1000 (warmup), else the model's (LSTM 0, Transformer 800)
    decay_start: float = 0.0  # budget: hold the LR for this fraction of the budget, then decay linearly
    max_steps: int | None = None  # optimiser updates in total, counted across resumes
    max_epochs: int = 50
    max_time: str | None = None  # training wall time in total, across resumes: "20m", "90s", "1.5h" or seconds
    early_stopping: int = 8  # stop after this many validations without BLEU improvement
    log_every: int = 50
    valid_every: int = 250
    checkpoint_every: int = 250
    valid_max_sentences: int | None = None  # cap the validation set (for quick runs)
    valid_batch_size: int = 128
    max_output_ratio: float = 2.0  # greedy/beam decoding stops after ratio * source + 10 tokens
    n_heatmaps: int = 4
    n_samples: int = 4
    nonfinite: str = "stop"  # a NaN/inf loss or gradient: stop (keeping the last checkpoint) | skip the batch
    max_skips: int = 10  # with nonfinite=skip: stop after this many non-finite batches in a row
    resume: bool | str = False  # true: continue last.pt | false: a new run | auto: continue last.pt if it exists
    resume_data: str = "same"  # resume: refuse a corpus that differs from the checkpoint's (same) | allow it (changed)

    def check(self) -> None:
        _require(
            re.fullmatch(DEVICES, self.device) is not None,
            "train.device",
            self.device,
            "auto, cpu, cuda, cuda:N or mps",
        )
        _require(self.threads is None or self.threads >= 1, "train.threads", self.threads, "at least 1")
        _require(self.precision in PRECISIONS, "train.precision", self.precision, ", ".join(PRECISIONS))
        _require(self.batch_tokens >= 1, "train.batch_tokens", self.batch_tokens, "at least 1")
        _require(
            self.pad_to_multiple >= 1, "train.pad_to_multiple", self.pad_to_multiple, "at least 1 (1: no rounding)"
        )
        _require(self.lr > 0, "train.lr", self.lr, "positive")
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "train.betas",
            self.betas,
            "two numbers in [0, 1)",
        )
        _require(self.clip_grad_norm >= 0, "train.clip_grad_norm", self.clip_grad_norm, "0 (off) or positive")
        _require(self.ema is None or 0.0 < self.ema < 1.0, "train.ema", self.ema, "null (off) or in (0, 1), e.g. 0.999")
        _require(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing", self.label_smoothing, "in [0, 1)")
        _require(0.0 <= self.teacher_forcing <= 1.0, "train.teacher_forcing", self.teacher_forcing, "in [0, 1]")
        _require(
            self.scheduler in ("auto", "budget", "plateau", "warmup", "constant"),
            "train.scheduler",
            self.scheduler,
            "auto, budget, plateau, warmup or constant",
        )
        _require(0 < self.lr_factor < 1, "train.lr_factor", self.lr_factor, "in (0, 1)")
        _require(0.0 <= self.decay_start < 1.0, "train.decay_start", self.decay_start, "in [0, 1)")
        _require(self.max_steps is None or self.max_steps >= 1, "train.max_steps", self.max_steps, "at least 1")
        _require(
            self.warmup_steps is None or self.warmup_steps >= 0, "train.warmup_steps", self.warmup_steps, "0 or more"
        )
        _require(self.max_epochs >= 1, "train.max_epochs", self.max_epochs, "at least 1")
        parse_duration(self.max_time)
        for key in ("log_every", "valid_every", "checkpoint_every", "valid_batch_size", "early_stopping"):
            _require(getattr(self, key) >= 1, f"train.{key}", getattr(self, key), "at least 1")
        _require(
            self.valid_max_sentences is None or self.valid_max_sentences >= 1,
            "train.valid_max_sentences",
            self.valid_max_sentences,
            "at least 1",
        )
        _require(self.max_output_ratio > 0, "train.max_output_ratio", self.max_output_ratio, "positive")
        _require(self.nonfinite in ("stop", "skip"), "train.nonfinite", self.nonfinite, "stop or skip")
        _require(self.max_skips >= 1, "train.max_skips", self.max_skips, "at least 1")
        _require(self.resume_data in ("same", "changed"), "train.resume_data", self.resume_data, "same or changed")
        _require(self.resume in (True, False, "auto"), "train.resume", self.resume, "true, false or auto")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig | TransformerConfig = field(default_factory=ModelConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        """Build and validate a config from a plain nested dict (a composed Hydra config)."""
        config = _build(cls, raw, "")
        config.check()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        self.data.check()
        self.model.check()
        self.attention.check()
        self.train.check()
        if isinstance(self.model, TransformerConfig):
            self._check_transformer()
            return
        memory = self.model.encoder_size * (2 if self.model.bidirectional else 1)
        if self.attention.type != "none" and self.attention.score in ("dot", "scaled_dot"):
            if memory != self.model.decoder_size:
                raise ConfigError(
                    f"attention.score={self.attention.score} compares decoder states with encoder states directly, "
                    f"so model.decoder_size ({self.model.decoder_size}) must equal the encoder output size "
                    f"({memory} = model.encoder_size x {2 if self.model.bidirectional else 1} directions); "
                    "change one of them or use attention.score=general"
                )
        self.attention.check_heads(self.model.decoder_size, memory)

    def _check_transformer(self) -> None:
        """The LSTM's own settings are refused with ``model=transformer``, each in one line."""
        if self.attention != AttentionConfig():
            changed = [
                f.name
                for f in dataclasses.fields(AttentionConfig)
                if getattr(self.attention, f.name) != getattr(AttentionConfig(), f.name)
            ]
            raise ConfigError(
                f"attention={self.attention.type} (attention.{changed[0]}) configures the LSTM decoders (model=lstm); "
                + TRANSFORMER_ATTENTION
            )
        if self.train.teacher_forcing < 1.0:
            raise ConfigError(
                f"train.teacher_forcing={self.train.teacher_forcing} (scheduled sampling) applies to model=lstm only: "
                "the Transformer's decoder reads the whole reference at once"
            )


def parse_duration(value: str | int | float | None) -> float | None:
    """``"20m"`` -> 1200.0 seconds; numbers are seconds; ``None`` means no limit."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
    if match is None:
        raise ConfigError(f"train.max_time={value!r} is not a duration; use e.g. 90s, 20m, 1.5h or a number of seconds")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        if not prefix:
            raise ConfigError(f"config must be a mapping, got {raw!r}")
        keys = ", ".join(prefix + f.name for f in dataclasses.fields(cls))
        meaning = f" ({cls.MEANING})" if hasattr(cls, "MEANING") else ""
        raise ConfigError(f"{prefix[:-1]}={raw!r} is a group of settings, not one value: set {keys}{meaning}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}; known keys here: {', '.join(sorted(names))}")
    return cls(**{name: _coerce(raw[name], hints[name], f"{prefix}{name}") for name in names if name in raw})


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint``; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        families = {o.family: o for o in options if dataclasses.is_dataclass(o) and hasattr(o, "family")}
        if families and isinstance(value, dict):  # model: the family's dataclass (no family key: lstm, as before)
            family = value.get("family", "lstm")
            if family not in families:
                raise ConfigError(f"{key}.family={family!r} is out of range: expected {', '.join(families)}")
            return _build(families[family], value, key + ".")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} has the wrong type: expected a list")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} has the wrong type: expected a mapping")
        _, item = typing.get_args(hint)
        return {str(k): _coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} has the wrong type: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={value!r} has the wrong type: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} has the wrong type: expected a number")
        return float(value)
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. train.max_time=600
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} has the wrong type: expected a string")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")
