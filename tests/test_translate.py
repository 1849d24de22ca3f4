"""The translate command and Translator with beam search, n-best lists and attention output."""

import io
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO
from seq2seq.config import Config
from seq2seq.model import build_model
from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.translate import main
from seq2seq.translator import Translator

THREE = "Ein Mann fährt Fahrrad.\n\nZwei Hunde spielen im Schnee.\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster


class Stdin(io.TextIOWrapper):
    def __init__(self, text: str, tty: bool = False):
        super().__init__(io.BytesIO(text.encode()), encoding="utf-8")
        self.tty = tty

    def isatty(self):
        return self.tty


def translate(monkeypatch, capsys, args, text=THREE, tty=False):
    """Run the command in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", Stdin(text, tty))
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_beam_keeps_line_count(trained_run):
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq.translate", "--checkpoint", str(trained_run / "best.pt"), "--beam", "5"],
        input=THREE.encode(),
        capture_output=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().split("\n")
    # a 60-step model's best beam may be the empty sentence; line i must still be sentence i's
    beam = Translator.from_checkpoint(trained_run / "best.pt").translate(THREE.splitlines(), beam=5)
    assert len(lines) == 4 and lines[:3] == beam and lines[1] == "" and lines[3] == ""


def test_translator_beam_api(trained_run):
    translator = Translator.from_checkpoint(trained_run / "best.pt")
    sentences = THREE.splitlines()
    beam = translator.translate(sentences, beam=5, length_penalty=0.6)
    assert len(beam) == 3 and beam[1] == ""  # a 60-step model's best beam may be empty for the others
    assert translator.translate(sentences, beam=1) == translator.translate(sentences)
    best = translator.nbest(sentences, beam=4, nbest=4)
    assert [len(h) for h in best] == [4, 0, 4]


def test_nbest_lines(trained_run, monkeypatch, capsys):
    status, out, _ = translate(
        monkeypatch, capsys, ["--checkpoint", trained_run / "best.pt", "--beam", 4, "--nbest", 3]
    )
    assert status == 0
    rows = [line.split(" ||| ") for line in out.splitlines()]
    assert len(rows) == 6 and all(len(r) == 3 for r in rows)
    assert [r[0] for r in rows] == ["0", "0", "0", "2", "2", "2"]
    for index in ("0", "2"):
        scores = [float(r[2]) for r in rows if r[0] == index]
        assert scores == sorted(scores, reverse=True)
        assert len({r[1] for r in rows if r[0] == index}) >= 2  # distinct token sequences, mostly distinct text


def test_nbest_wider_than_beam_is_refused(trained_run, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        translate(monkeypatch, capsys, ["--checkpoint", trained_run / "best.pt", "--nbest", 3])
    assert exit_info.value.code == 2 and "--nbest 3 needs --beam 3" in capsys.readouterr().err


def test_attention_png_one_file_per_line(trained_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "maps"
    args = ["--checkpoint", trained_run / "best.pt", "--beam", 3, "--attention-png", folder]
    status, out, _ = translate(monkeypatch, capsys, args)
    assert status == 0 and out.count("\n") == 3
    assert sorted(p.name for p in folder.iterdir()) == ["0001.png", "0003.png"]
    assert (folder / "0001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_attention_writes_stderr_only(trained_run, monkeypatch, capsys):
    plain = translate(monkeypatch, capsys, ["--checkpoint", trained_run / "best.pt"])
    status, out, err = translate(monkeypatch, capsys, ["--checkpoint", trained_run / "best.pt", "--show-attention"])
    assert status == 0 and out == plain[1]
    assert "line 1: Ein Mann fährt Fahrrad." in err and "line 3: Zwei Hunde" in err and "line 2:" not in err
    rows = [line for line in err.splitlines() if " <- " in line]
    assert rows and all(0.0 <= float(line.split()[-1]) <= 1.0 for line in rows)


def test_over_long_line_is_skipped_with_a_warning(trained_run, monkeypatch, capsys):
    text = "Ein Hund.\n" + "x" * 100_000 + "\nZwei Hunde.\n"  # one "word", many thousand subwords
    args = ["--checkpoint", trained_run / "best.pt", "--max-input-tokens", 50, "--beam", 2]
    status, out, err = translate(monkeypatch, capsys, args, text)
    lines = out.split("\n")
    assert status == 1 and len(lines) == 4 and lines[0] and lines[1] == "" and lines[2]
    assert re.search(r"warning: line 2 has \d+ subword tokens, more than --max-input-tokens 50", err)


def test_terminal_input_is_interactive(trained_run, monkeypatch, capsys):
    status, out, err = translate(monkeypatch, capsys, ["--checkpoint", trained_run / "best.pt"], THREE, tty=True)
    assert status == 0
    assert out.count("\n") == 3 and out.split("\n")[1] == ""
    assert err.count("> ") == 4  # a prompt per line, and one more that meets EOF


def test_attention_free_checkpoint_notes_and_ignores(trained_run, tmp_path, monkeypatch, capsys):
    payload = load_checkpoint(trained_run / "best.pt")
    payload["config"]["attention"]["type"] = "none"
    config = Config.from_dict(payload["config"])
    translator = Translator.from_checkpoint(trained_run / "best.pt")
    model = build_model(len(translator.vocab.src), len(translator.vocab.tgt), config.model, config.attention)
    save_checkpoint({**payload, "model": model.state_dict()}, tmp_path / "none.pt")
    args = ["--checkpoint", tmp_path / "none.pt", "--show-attention", "--attention-png", tmp_path / "maps"]
    status, out, err = translate(monkeypatch, capsys, args)
    assert status == 0 and out.count("\n") == 3
    assert err.count("no attention") == 1 and " <- " not in err
    assert not (tmp_path / "maps").exists()


@pytest.mark.parametrize("junk", [b"not a checkpoint", b"junk", b""])
def test_bad_checkpoint_is_one_error_line(tmp_path, monkeypatch, capsys, junk):
    (tmp_path / "junk.pt").write_bytes(junk)
    status, out, err = translate(monkeypatch, capsys, ["--checkpoint", tmp_path / "junk.pt", "--beam", 5])
    assert status == 2 and out == "" and err.startswith("error: ") and "Traceback" not in err


# -- input that is not there, or stops ---------------------------------------------------------


def test_closed_stdin_is_no_input(trained_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", None)  # what Python sees for `seq2seq-translate <&-`
    status = main(["--checkpoint", str(trained_run / "best.pt")])
    out, err = capsys.readouterr()
    assert status == 0 and out == "" and "Traceback" not in err


class InterruptedStdin(Stdin):
    def readline(self, *args):
        line = super().readline(*args)
        if not line:
            raise KeyboardInterrupt  # Ctrl-C at the prompt after the given lines
        return line


def test_ctrl_c_at_the_prompt_ends_the_session_without_a_traceback(trained_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", InterruptedStdin("Ein Hund.\n", True))
    status = main(["--checkpoint", str(trained_run / "best.pt")])
    out, err = capsys.readouterr()
    assert status == 0 and out.count("\n") == 1 and err.count("> ") == 2 and err.endswith("\n")


def test_a_string_is_one_sentence(trained_run):
    translator = Translator.from_checkpoint(trained_run / "best.pt")
    one = translator.translate("Ein Hund rennt.")
    assert isinstance(one, str) and one == translator.translate(["Ein Hund rennt."])[0]
    with pytest.raises(TypeError, match="takes a list of sentences"):
        translator.nbest("Ein Hund rennt.")


def test_the_package_exports_the_public_api():
    import seq2seq

    assert seq2seq.Translator is Translator and callable(seq2seq.train) and seq2seq.Config is Config
    with pytest.raises(AttributeError):
        seq2seq.nothing  # noqa: B018
