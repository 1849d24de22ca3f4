"""Translate with a checkpoint alone: ``seq2seq-translate --checkpoint RUN/best.pt``.

Reads one sentence per line from stdin (or ``--input FILE``) and writes exactly one line per
input line to stdout. Blank lines give blank lines. A line that is not UTF-8 gets a warning
with its line number and a blank output line, and the command exits with status 1 at the end.
The Python API is :class:`Translator`::

    Translator.from_checkpoint("outputs/.../best.pt").translate(["Ein Hund rennt."])
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import Config
from seq2seq.errors import CheckpointError, Seq2SeqError
from seq2seq.model import Seq2Seq, build_model
from seq2seq.search import Hypothesis, decode_corpus
from seq2seq.vocab import Vocab


class Translator:
    """A trained model with its vocabulary, ready to decode."""

    def __init__(self, model: Seq2Seq, vocab: Vocab, config: Config, device: torch.device):
        self.model, self.vocab, self.config, self.device = model.eval(), vocab, config, device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Translator:
        payload = load_checkpoint(path)
        try:
            config = Config.from_dict(payload["config"])
            vocab = Vocab.from_state_dict(payload["vocab"])
            model = build_model(len(vocab.src), len(vocab.tgt), config.model, config.attention)
            model.load_state_dict(payload["model"])
        except (Seq2SeqError, KeyError, RuntimeError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path} does not match this version of seq2seq "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
            ) from None
        return cls(model.to(device), vocab, config, torch.device(device))

    def hypotheses(self, sentences: Sequence[str], return_attention: bool = False) -> list[Hypothesis]:
        src_ids = self.vocab.encode_src(list(sentences))
        return decode_corpus(self.model, src_ids, self.device, 64, self.config.train.max_output_ratio, return_attention)

    def translate(self, sentences: Sequence[str]) -> list[str]:
        """Detokenised translations, one per sentence; blank sentences give blank translations."""
        out = [""] * len(sentences)
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        for i, hyp in zip(todo, self.hypotheses([sentences[i] for i in todo])):
            out[i] = self.vocab.decode_tgt(hyp.tokens)
        return out


def read_lines(stream) -> tuple[list[str], list[int]]:
    """Lines of a binary stream as text; returns the lines and the 1-based numbers of bad ones."""
    lines, bad = [], []
    for number, raw in enumerate(stream, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError:
            bad.append(number)
            lines.append("")
    return lines, bad


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq-translate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by train.py")
    parser.add_argument("--input", help="a file with one sentence per line (default: stdin)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    try:
        translator = Translator.from_checkpoint(args.checkpoint, args.device)
        if args.input:
            try:
                with open(args.input, "rb") as handle:
                    lines, bad = read_lines(handle)
            except OSError as error:
                raise Seq2SeqError(f"cannot read --input {args.input}: {error.strerror}") from None
        else:
            lines, bad = read_lines(sys.stdin.buffer)
    except Seq2SeqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for number in bad:
        print(f"warning: line {number} is not valid UTF-8; writing a blank line for it", file=sys.stderr)
    for line in translator.translate(lines):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
