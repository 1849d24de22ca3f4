"""The Python API of a trained model: :class:`Translator`.

    from seq2seq import Translator
    translator = Translator.from_checkpoint("outputs/.../best.pt")
    translator.translate("Ein Hund rennt.", beam=5)

``seq2seq-translate`` (:mod:`seq2seq.translate`) and evaluation (:mod:`seq2seq.evaluate`) decode
through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from seq2seq.attention_rows import module_fields
from seq2seq.config import Config
from seq2seq.data.vocab import Vocab
from seq2seq.errors import CheckpointError, Seq2SeqError
from seq2seq.explorer import ModelView, Record, attention_info, page_data, record, transformer_info, write_page
from seq2seq.hardware import bound_kernel_caches, pick_device, resolve_precision
from seq2seq.lesson import Steps, steps_taken
from seq2seq.lesson_layers import last_cross, replay
from seq2seq.model import Seq2Seq, Transformer, build_model, describe
from seq2seq.search import Hypothesis, Search, decode_corpus_nbest
from seq2seq.training.checkpoint import load_checkpoint

EOS_LABEL = "</s>"


class Translator:
    """A trained model with its vocabulary, ready to decode."""

    def __init__(self, model: Seq2Seq, vocab: Vocab, config: Config, device: torch.device, precision: str = "auto"):
        """``precision``: ``auto`` (bf16 autocast on a CPU that has it natively), ``fp32`` or ``bf16``."""
        bound_kernel_caches()  # before the first decoding step builds a kernel (a no-op after training)
        self.model, self.vocab, self.config, self.device = model.eval(), vocab, config, device
        self.precision = resolve_precision(precision, device, "--precision")

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", precision: str = "auto") -> Translator:
        return cls.from_payload(load_checkpoint(path), path, device, precision)

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], path: str | Path, device: str = "cpu", precision: str = "auto"
    ) -> Translator:
        """Build from an already loaded checkpoint ``payload`` (``path`` names it in errors).

        ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (the GPU where one is visible).
        """
        target = pick_device(device)  # a device this machine lacks fails before the model is built
        try:
            config = Config.from_dict(payload["config"])
            vocab = Vocab.from_state_dict(payload["vocab"])
            model = build_model(len(vocab.src), len(vocab.tgt), config.model, config.attention, vocab)
            model.load_state_dict(payload["model"])
        except (Seq2SeqError, KeyError, RuntimeError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path} does not match this version of seq2seq "
                f"({type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]})"
            ) from None
        return cls(model.to(target), vocab, config, target, precision)

    def nbest(
        self,
        sentences: Sequence[str],
        beam: int = 1,
        length_penalty: float = 1.0,
        nbest: int = 1,
        return_attention: bool = False,
        batch_size: int = 64,
    ) -> list[list[Hypothesis]]:
        """The ``nbest`` best hypotheses per sentence, best first; blank sentences get none."""
        if isinstance(sentences, str):  # a string would be decoded character by character
            raise TypeError("Translator.nbest takes a list of sentences; wrap a single sentence in a list")
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        src_ids = self.vocab.encode_src([sentences[i] for i in todo])
        search = Search(
            beam=beam,
            length_penalty=length_penalty,
            nbest=nbest,
            max_ratio=self.config.train.max_output_ratio,
            batch_size=batch_size,
            precision=self.precision,
            return_attention=return_attention,
        )
        hyps = decode_corpus_nbest(self.model, src_ids, self.device, search)
        out: list[list[Hypothesis]] = [[] for _ in sentences]
        for i, hyp in zip(todo, hyps):
            out[i] = hyp
        return out

    def translate(self, sentences: str | Sequence[str], beam: int = 1, length_penalty: float = 1.0) -> str | list[str]:
        """Detokenised translations, one per sentence; blank sentences give blank translations.

        A single string is one sentence and gets one string back.
        """
        if isinstance(sentences, str):
            return self.translate([sentences], beam, length_penalty)[0]
        return [self.text(h[0]) if h else "" for h in self.nbest(sentences, beam, length_penalty)]

    @property
    def name(self) -> str:
        """``bahdanau (concat)``, ``luong (general, input feeding)``, ``bahdanau (concat, 4 heads)``, ``none``,
        ``transformer (3+3 layers, d 256, 4 heads, sinusoidal positions, pre-norm)``."""
        if isinstance(self.model, Transformer):
            return describe(self.config)
        a = self.config.attention
        if a.type == "none":
            return "none"
        extra = ", input feeding" if a.type == "luong" and a.input_feeding else ""
        heads = f", {a.heads} heads" if a.heads > 1 else ""
        return f"{a.type} ({a.score}{extra}{heads})"

    @property
    def attention_info(self) -> dict[str, str] | None:
        """The explorer's step-panel labels for this model (None for ``attention=none``)."""
        if isinstance(self.model, Transformer):
            return transformer_info(self.config.model)
        a = self.config.attention
        return attention_info(a.type, a.score, self.model.encoder.output_size, a.heads)

    def write_page(self, path: str | Path, sentences: Sequence[str], beam: int = 1) -> Path:
        """Translate ``sentences`` and write their explorer page (playback, step panel, heatmaps) to ``path``:
        every score of every step kept, so the step panel's softmax can be redone by hand."""
        hyps = self.nbest(sentences, beam, return_attention=True)
        best = [h[0] if h else None for h in hyps]
        records = explorer_records(self, sentences, best, [None] * len(sentences), full=len(sentences))
        return write_page(path, translation_page(self, sentences, records))

    def text(self, hyp: Hypothesis) -> str:
        """The detokenised output, always one line (a line break would shift every later line)."""
        return " ".join(self.vocab.decode_tgt(hyp.tokens).splitlines())

    def token_counts(self, sentences: Sequence[str]) -> list[int]:
        """Each sentence's length in source subword tokens."""
        return [len(ids) for ids in self.vocab.encode_src(list(sentences))]

    def labels(self, sentence: str, hyp: Hypothesis) -> tuple[list[str], list[str]]:
        """Source and output pieces (with ``</s>``) labelling the rows and columns of ``hyp.attention``."""
        src = self.vocab.src_pieces(self.vocab.encode_src([sentence])[0]) + [EOS_LABEL]
        out = self.vocab.tgt_pieces(hyp.tokens) + [EOS_LABEL]
        return src, out[: hyp.attention.size(0)] if hyp.attention is not None else out


def explorer_records(
    translator: Translator,
    sentences: Sequence[str],
    hyps: Sequence[Hypothesis | None],
    refs: Sequence[str | None],
    full: int = 0,
) -> list[Record]:
    """The explorer's sentences: pieces, sentence chrF against the reference, and, where the model
    attends, the attention of every step replayed with its scores (:func:`seq2seq.lesson.attention_steps`):
    every score for the first ``full`` sentences, those of weights of 2 % and more for the rest."""
    todo = [i for i, h in enumerate(hyps) if h is not None]
    steps: list[Steps | None] = [None] * len(sentences)
    modules: list[dict[str, Any] | None] = [None] * len(sentences)  # a Transformer's other layers, full ones only
    if translator.model.has_attention and todo:
        src_ids = translator.vocab.encode_src([sentences[i] for i in todo])
        every_module = sum(1 for i in todo if i < full)  # the other layers are kept for full sentences only
        reported, layered = replay(translator.model, src_ids, [steps_taken(hyps[i]) for i in todo], every_module)
        for k, i in enumerate(todo):
            steps[i] = reported[k]
            if layered is not None and i < full:
                modules[i] = module_fields(layered[k], reported=last_cross(translator.model))
    records = []
    for i, (sentence, hyp, ref, st) in enumerate(zip(sentences, hyps, refs, steps)):
        if hyp is None:  # a blank (or skipped) line
            records.append(record("", [], [], None, ref))
            continue
        src_pieces, out_pieces = translator.labels(sentence, hyp)
        records.append(record(translator.text(hyp), src_pieces, out_pieces, hyp.attention, ref, st, i < full))
        records[-1].modules = modules[i]
    return records


def translation_page(translator: Translator, sentences: Sequence[str], records: Sequence[Record]) -> dict[str, Any]:
    """The explorer page's data for translated ``sentences`` (no references): one model, its records."""
    view = ModelView(translator.name, list(records), attention=translator.attention_info)
    return page_data(f"{translator.name}: translations", [{"src": s} for s in sentences], [view])


def explorer_record(
    translator: Translator, sentence: str, hyp: Hypothesis | None, ref: str | None, full: bool = True
) -> Record:
    """One sentence for the explorer (:func:`explorer_records` of one), every score kept unless not ``full``."""
    return explorer_records(translator, [sentence], [hyp], [ref], full=int(full))[0]
