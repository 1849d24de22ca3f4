"""Translate with a checkpoint alone: ``seq2seq-translate --checkpoint RUN/best.pt``.

Reads one sentence per line from stdin (or ``--input FILE``) and writes exactly one line per
input line to stdout; from a terminal it prompts for one sentence at a time until EOF. Blank
lines give blank lines. A line that is not UTF-8, or longer than ``--max-input-tokens`` subword tokens,
gets a warning with its line number and a blank output line, and the command exits with
status 1 at the end. ``--beam K`` decodes with beam search (``--length-penalty`` is GNMT's
alpha); ``--nbest N`` writes N lines ``index ||| hypothesis ||| score`` per input line (index
0-based; blank and skipped lines have none). ``--show-attention`` prints, on stderr, the source
piece each output piece attends to most; ``--attention-png DIR`` draws one heatmap per line
(``DIR/0001.png`` for line 1); ``--html FILE`` writes the explorer page of every line
(:mod:`seq2seq.explorer`), every score of every step kept so that the step panel's softmax can be
redone by hand. The Python API is :class:`seq2seq.translator.Translator`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from seq2seq.config import PRECISIONS
from seq2seq.errors import Seq2SeqError
from seq2seq.explorer import write_page
from seq2seq.search import Hypothesis
from seq2seq.translator import Translator, explorer_record, translation_page

EOS_LABEL = "</s>"
CHUNK = 2048  # input lines decoded (and written) at a time, so long inputs stream


# -- the command -----------------------------------------------------------------------------


@dataclass
class Options:
    """What the command does with each line, from its arguments."""

    beam: int = 1
    length_penalty: float = 1.0
    nbest: int | None = None  # None: one plain line per input
    batch_size: int = 64
    max_input_tokens: int = 400
    show_attention: bool = False
    attention_png: Path | None = None
    html: Path | None = None  # the explorer page of everything translated
    explored: list = field(default_factory=list)  # (sentence, Record) for --html

    @property
    def wants_attention(self) -> bool:
        return self.show_attention or self.attention_png is not None or self.html is not None


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


def drop_long(
    lines: Sequence[str], first: int, limit: int, err: TextIO, count: Callable[[list[str]], list[int]]
) -> tuple[list[str], int]:
    """``lines`` with each one over ``limit`` subword tokens blanked out and warned about, and how many.

    ``count`` gives each line's length in source subword tokens (what the model reads, so a
    megabyte without spaces counts as long as it is). ``first`` is the 0-based index of
    ``lines[0]`` in the whole input (warnings give 1-based numbers).
    """
    kept, dropped = list(lines), 0
    for i, n in enumerate(count(list(lines))):
        if n > limit:
            err.write(
                f"warning: line {first + i + 1} has {n} subword tokens, more than --max-input-tokens {limit}; "
                "writing a blank line for it\n"
            )
            kept[i], dropped = "", dropped + 1
    return kept, dropped


def show_alignment(translator: Translator, number: int, sentence: str, hyp: Hypothesis, err: TextIO) -> None:
    """For each output piece, the source piece it attends to most and that weight."""
    src, out = translator.labels(sentence, hyp)
    err.write(f"line {number}: {sentence}\n  -> {translator.text(hyp)}\n")
    width = max(len(piece) for piece in out)
    for piece, row in zip(out, hyp.attention):
        weight, column = row.max(0)
        err.write(f"  {piece:<{width}}  <- {src[int(column)]}  {float(weight):.2f}\n")


def save_heatmap(translator: Translator, folder: Path, number: int, sentence: str, hyp: Hypothesis) -> None:
    from seq2seq.plots import attention_figure, close  # matplotlib only when asked for

    src, out = translator.labels(sentence, hyp)
    fig = attention_figure(hyp.attention.numpy(), src, out, title=f"line {number}: {translator.text(hyp)}"[:100])
    fig.savefig(folder / f"{number:04d}.png", dpi=100)
    close(fig)


def process(translator: Translator, lines: Sequence[str], first: int, opts: Options, out: TextIO, err: TextIO) -> bool:
    """Translate and write one block of lines (line ``first + 1`` onwards); True if any was too long."""
    kept, dropped = drop_long(lines, first, opts.max_input_tokens, err, translator.token_counts)
    attention = opts.wants_attention and translator.model.has_attention
    hyps = translator.nbest(kept, opts.beam, opts.length_penalty, opts.nbest or 1, attention, opts.batch_size)
    for i, (sentence, nbest) in enumerate(zip(kept, hyps)):
        if opts.nbest is None:
            out.write((translator.text(nbest[0]) if nbest else "") + "\n")
        else:  # Moses-style n-best list; blank and skipped lines have no entries
            out.writelines(f"{first + i} ||| {translator.text(hyp)} ||| {hyp.score:.4f}\n" for hyp in nbest)
        if nbest and attention and opts.show_attention:
            show_alignment(translator, first + i + 1, sentence, nbest[0], err)
        if nbest and attention and opts.attention_png is not None:
            save_heatmap(translator, opts.attention_png, first + i + 1, sentence, nbest[0])
        if opts.html is not None:
            opts.explored.append((sentence, explorer_record(translator, sentence, nbest[0] if nbest else None, None)))
    out.flush()
    return dropped > 0


def interactive(translator: Translator, opts: Options, out: TextIO, err: TextIO) -> bool:
    """Prompt for one sentence at a time (on a terminal) until EOF or Ctrl-C; True if any line was too long."""
    bad, number = False, 0
    err.write("Type a sentence and press Enter; Ctrl-D (or Ctrl-C) ends.\n")
    try:
        while True:
            err.write("> ")
            err.flush()
            line = sys.stdin.readline()
            if not line:
                break
            bad |= process(translator, [line.rstrip("\r\n")], number, opts, out, err)
            number += 1
    except KeyboardInterrupt:  # at the prompt or while decoding: the session ends, as with Ctrl-D
        pass
    err.write("\n")
    return bad


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seq2seq-translate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by train.py")
    parser.add_argument("--input", help="a file with one sentence per line (default: stdin)")
    parser.add_argument(
        "--device", default="cpu", help="cpu (the default), cuda, cuda:N, mps or auto (a GPU if visible)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto (the default): bf16 autocast on a CPU that has it natively, else fp32",
    )
    parser.add_argument("--beam", type=int, default=1, help="beam width; 1 (the default) is greedy search")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="GNMT alpha for beam search; 0: none")
    parser.add_argument("--nbest", type=int, help="write N lines 'index ||| hypothesis ||| score' per input")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences decoded together")
    parser.add_argument(
        "--max-input-tokens", type=int, default=400, help="lines longer than this in subword tokens are skipped"
    )
    parser.add_argument("--show-attention", action="store_true", help="print each line's alignment on stderr")
    parser.add_argument("--attention-png", metavar="DIR", help="write one attention heatmap per line into DIR")
    parser.add_argument("--html", metavar="FILE", help="write an explorer page of every line and its attention")
    return parser


def parse_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Options:
    for name in ("beam", "batch_size", "max_input_tokens", "nbest"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.length_penalty < 0:
        parser.error("--length-penalty must be 0 or more")
    if args.nbest is not None and args.nbest > args.beam:
        parser.error(f"--nbest {args.nbest} needs --beam {args.nbest} or wider")
    png = Path(args.attention_png) if args.attention_png else None
    html = Path(args.html) if args.html else None
    return Options(
        args.beam,
        args.length_penalty,
        args.nbest,
        args.batch_size,
        args.max_input_tokens,
        args.show_attention,
        png,
        html,
    )


def load(args: argparse.Namespace, opts: Options, err: TextIO) -> tuple[Translator, list[str] | None, list[int]]:
    """The translator and, unless reading from a terminal, the input lines and bad line numbers."""
    translator = Translator.from_checkpoint(args.checkpoint, args.device, args.precision)
    if (opts.show_attention or opts.attention_png) and not translator.model.has_attention:
        err.write("note: this checkpoint has no attention (attention=none); --show-attention/--attention-png ignored\n")
    elif opts.attention_png is not None:
        try:
            opts.attention_png.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise Seq2SeqError(f"cannot create --attention-png {opts.attention_png}: {error.strerror}") from None
    if args.input:
        try:
            with open(args.input, "rb") as handle:
                return translator, *read_lines(handle)
        except OSError as error:
            raise Seq2SeqError(f"cannot read --input {args.input}: {error.strerror}") from None
    if sys.stdin is None:  # stdin closed (<&-): no input, like an empty file
        return translator, [], []
    if sys.stdin.isatty():
        return translator, None, []
    return translator, *read_lines(sys.stdin.buffer)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    opts = parse_options(parser, args)
    out, err = sys.stdout, sys.stderr
    try:
        translator, lines, bad = load(args, opts, err)
    except Seq2SeqError as error:
        print(f"error: {error}", file=err)
        return 2
    if lines is None:
        status = 1 if interactive(translator, opts, out, err) else 0
    else:
        for number in bad:
            err.write(f"warning: line {number} is not valid UTF-8; writing a blank line for it\n")
        long_lines = False
        for first in range(0, len(lines), CHUNK):
            long_lines |= process(translator, lines[first : first + CHUNK], first, opts, out, err)
        status = 1 if bad or long_lines else 0
    if opts.html is not None:
        try:
            write_html(translator, opts)
        except OSError as error:
            print(f"error: cannot write --html {opts.html}: {error.strerror}", file=err)
            return 2
        err.write(f"wrote {opts.html}\n")
    return status


def write_html(translator: Translator, opts: Options) -> Path:
    sentences = [sentence for sentence, _ in opts.explored]
    return write_page(opts.html, translation_page(translator, sentences, [rec for _, rec in opts.explored]))


if __name__ == "__main__":
    sys.exit(main())
