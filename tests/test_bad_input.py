"""Bad input of every kind: a clear message naming what is wrong, a non-zero exit, nothing damaged."""

import contextlib
import gzip
import io
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_corpus
from seq2seq.config import DataConfig, VocabConfig
from seq2seq.data.corpora import load_split
from seq2seq.data.vocab import build_vocab
from seq2seq.errors import ConfigError, DataError
from seq2seq.evaluate import main as evaluate_main
from seq2seq.hardware import pick_device
from seq2seq.translate import main

# -- the corpus -------------------------------------------------------------------------------


def corrupt(tmp_path, damage):
    folder = write_corpus(tmp_path / "multi30k", {"val": 50})
    damage(folder / "val.de.gz")
    return DataConfig(root=str(tmp_path))


def empty(path):
    with gzip.open(path, "wb"):
        pass


def not_gzip(path):
    path.write_bytes(b"Ein Mann.\nZwei Hunde.\n")


def truncated(path):
    path.write_bytes(path.read_bytes()[:-20])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (empty, r"val\.de\.gz is empty"),
        (not_gzip, r"val\.de\.gz is not a gzip file .* drop the \.gz suffix"),
        (truncated, r"val\.de\.gz is damaged after line \d+"),
    ],
    ids=["empty", "not-gzip", "truncated-gzip"],
)
def test_damaged_corpus_files_are_named(tmp_path, damage, message):
    with pytest.raises(DataError, match=message):
        load_split(corrupt(tmp_path, damage), "val")


def test_vocabulary_larger_than_the_corpus_supports(corpus_root):
    ds = load_split(DataConfig(root=str(corpus_root)), "val")
    with pytest.raises(DataError, match=r"data\.vocab\.size=50000 is more than .* \(at most \d+ pieces\)"):
        build_vocab(list(ds["src"]), list(ds["tgt"]), VocabConfig(size=50000))


# -- the translate command: checkpoints ---------------------------------------------------------


class Evil:
    def __reduce__(self):
        return (print, ("this ran",))


def missing(tmp_path, good):
    return tmp_path / "nope.pt"


def directory(tmp_path, good):
    return tmp_path


def cut_short(tmp_path, good):
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return tmp_path / "cut.pt"


def pickled_code(tmp_path, good):
    payload = torch.load(good, weights_only=True)
    payload["extra"] = Evil()
    torch.save(payload, tmp_path / "evil.pt")
    return tmp_path / "evil.pt"


def wrong_kind(tmp_path, good):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    return tmp_path / "other.pt"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (missing, "does not exist"),
        (directory, "is a directory; pass the file itself"),
        (cut_short, "damaged or not a checkpoint"),
        (pickled_code, "refusing to load"),
        (wrong_kind, "is not a seq2seq checkpoint"),
    ],
    ids=["missing", "directory", "truncated", "pickled-object", "not-seq2seq"],
)
def test_bad_checkpoint_path_or_file(trained_run, tmp_path, capsys, monkeypatch, make, message):
    path = make(tmp_path, trained_run / "best.pt")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Hallo\n")))
    status = main(["--checkpoint", str(path)])
    out, err = capsys.readouterr()
    assert status == 2 and out == "" and "this ran" not in out + err
    assert err.startswith("error: ") and message in err and "Traceback" not in err and err.count("\n") == 1
    assert "weights_only" not in err and "\x1b" not in err  # torch's advice and terminal codes stay out


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "--device='gpu' is not a device; choose auto, cpu, cuda, cuda:N or mps"),
        ("cuda:99", "--device=cuda:99 but "),  # no CUDA build, or fewer than 100 GPUs
    ],
)
def test_a_device_the_machine_lacks_is_one_line(trained_run, capsys, monkeypatch, device, message):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Hallo\n")))
    for command in (main, evaluate_main):
        args = ["--checkpoint", str(trained_run / "best.pt")] if command is main else ["--run", str(trained_run)]
        status = command([*args, "--device", device])
        out, err = capsys.readouterr()
        assert status == 2 and out == ""
        assert err.startswith("error: ") and message in err and "Traceback" not in err and err.count("\n") == 1
    assert "weights_only" not in err and "\x1b" not in err  # torch's advice and terminal codes stay out
    with pytest.raises(ConfigError, match="train.device="):
        pick_device(torch.device(device) if device.startswith("cuda") else device, "train.device")


def test_bf16_where_it_cannot_run_is_one_line_for_translate_and_evaluate(trained_run, capsys, monkeypatch):
    monkeypatch.setattr("seq2seq.hardware.bf16_lstm_runs", lambda device: False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Hallo\n")))
    before = sorted(trained_run.rglob("*"))
    for command in (main, evaluate_main):
        args = ["--checkpoint", str(trained_run / "best.pt")] if command is main else ["--run", str(trained_run)]
        status = command([*args, "--precision", "bf16"])
        out, err = capsys.readouterr()
        assert status == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith("error: --precision=bf16 but this CPU (") and "use --precision=fp32" in err
    assert sorted(trained_run.rglob("*")) == before  # nothing written


def test_mps_is_picked_by_auto_where_available_and_refused_where_not(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("seq2seq.hardware.mps_available", lambda: True)
    assert pick_device("auto") == torch.device("mps") and pick_device("mps") == torch.device("mps")
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr("seq2seq.hardware.mps_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"^train\.device=mps but this machine or torch build has no Apple MPS"):
        pick_device("mps", "train.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")  # CUDA first


# -- the translate command: whatever arrives on stdin ------------------------------------------------


class BinaryStdin(io.TextIOWrapper):
    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="utf-8")

    def isatty(self):
        return False


def run_translate(checkpoint, data: bytes, *args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = BinaryStdin(data)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["--checkpoint", str(checkpoint), *map(str, args)])
    finally:
        sys.stdin = stdin
    return status, out.getvalue(), err.getvalue()


def n_lines(data: bytes) -> int:
    return len(data.split(b"\n")) - (1 if data.endswith(b"\n") or not data else 0)


lines = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),  # junk, NUL bytes, bad UTF-8
        st.text(max_size=40).map(lambda t: t.replace("\n", "").encode()),  # any Unicode, \r and \u2028 too
        st.just(b""),
    ),
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=lines, final_newline=st.booleans())
def test_any_bytes_keep_the_line_count(trained_run, lines, final_newline):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    status, out, err = run_translate(trained_run / "best.pt", data, "--max-input-tokens", 60)
    assert out.count("\n") == n_lines(data)
    assert "Traceback" not in err
    bad_utf8 = any(_not_utf8(line) for line in lines)
    assert status == (1 if bad_utf8 or "warning: line" in err else 0)
    for number, line in enumerate(data.split(b"\n")[: n_lines(data)], start=1):
        if _not_utf8(line):
            assert f"line {number} is not valid UTF-8" in err
            assert out.split("\n")[number - 1] == ""


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_empty_stdin_gives_empty_output(trained_run):
    assert run_translate(trained_run / "best.pt", b"") == (0, "", "")
