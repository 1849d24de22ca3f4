"""The real commands, run in a subprocess as a user types them."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, TINY

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run(args, **kwargs):
    return subprocess.run(args, cwd=REPO, capture_output=True, timeout=300, env=ENV, **kwargs)


@pytest.mark.slow
def test_train_py_runs_and_refuses_to_overwrite(corpus_root, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "train.py", *TINY, "attention=luong", "train.max_steps=12", f"hydra.run.dir={out}"]
    env = {**ENV, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    first = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert (out / "best.pt").exists() and (out / "last.pt").exists() and list(out.glob("events.out.tfevents.*"))
    before = (out / "last.pt").read_bytes()
    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and "already holds a checkpoint" in again.stderr
    assert "Traceback" not in again.stderr and (out / "last.pt").read_bytes() == before


# oneDNN and ATen limited to AVX2: a CPU without AVX-512 (and so without bf16 LSTM kernels) on any x86 host
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


@pytest.mark.slow
def test_bf16_on_an_avx2_cpu_exits_2_with_one_line_and_writes_nothing(corpus_root, tmp_path):
    """The issue's check: ``train.precision=bf16`` where bf16 LSTMs cannot run (where they can, it trains)."""
    env = {**ENV, **AVX2_ONLY, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    probe = "import torch; from seq2seq.hardware import bf16_lstm_runs; print(bf16_lstm_runs(torch.device('cpu')))"
    runs = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, env=env)
    assert runs.stdout.strip() in ("True", "False"), runs.stderr
    out = tmp_path / "run"
    args = [sys.executable, "train.py", *TINY, "train.precision=bf16", "train.max_steps=5", f"hydra.run.dir={out}"]
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    if runs.stdout.strip() == "True":  # e.g. an ARM CPU whose oneDNN has bf16 LSTMs: the cap means nothing there
        assert result.returncode == 0 and (out / "last.pt").exists(), result.stderr
        return
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: train.precision=bf16 but this CPU")
    assert "use train.precision=fp32 or train.precision=auto" in result.stderr and not out.exists()


@pytest.mark.slow
def test_missing_corpus_is_one_clear_line(tmp_path):
    env = {**ENV, "SEQ2SEQ_DATA_DIR": str(tmp_path / "nowhere")}
    result = subprocess.run(
        [sys.executable, "train.py", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 2
    assert "nowhere/multi30k does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
def test_translate_keeps_line_count(trained_run):
    ckpt = str(trained_run / "best.pt")
    result = run(
        ["seq2seq-translate", "--checkpoint", ckpt],
        input="Ein Mann fährt Fahrrad.\n\nZwei Hunde spielen im Schnee.\n".encode(),
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == "" and lines[0] and lines[2]


@pytest.mark.slow
def test_translate_bad_bytes_and_bad_checkpoint(trained_run, tmp_path):
    ckpt = str(trained_run / "best.pt")
    result = run(["seq2seq-translate", "--checkpoint", ckpt], input=b"Ein Hund.\n\xff\xfe\n")
    assert result.returncode == 1
    assert result.stdout.decode().count("\n") == 2 and result.stdout.decode().endswith("\n\n")
    assert "line 2 is not valid UTF-8" in result.stderr.decode()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    bad = run(["seq2seq-translate", "--checkpoint", str(tmp_path / "junk.pt")], input=b"Hallo\n")
    assert bad.returncode == 2 and b"damaged or not a checkpoint" in bad.stderr and b"Traceback" not in bad.stderr


@pytest.mark.slow
def test_sigterm_saves_and_resume_finishes(corpus_root, tmp_path):
    import signal
    import time

    from seq2seq.training.checkpoint import load_checkpoint

    out = tmp_path / "run"
    env = {**ENV, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    args = [sys.executable, "train.py", *TINY, "attention=bahdanau", "train.max_steps=100000", f"hydra.run.dir={out}"]
    proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "train.resume=true" in stderr and "Traceback" not in stderr
    stopped_at = load_checkpoint(out / "last.pt")["progress"]["step"]
    assert stopped_at >= 10
    resumed = subprocess.run(
        [
            sys.executable,
            "train.py",
            *TINY,
            "attention=bahdanau",
            f"train.max_steps={stopped_at + 5}",
            "train.resume=true",
            f"hydra.run.dir={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "last.pt")["progress"]["step"] == stopped_at + 5
