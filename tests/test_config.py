import subprocess
import sys

import pytest

from conftest import REPO, compose
from seq2seq.config import Config, parse_duration
from seq2seq.errors import ConfigError


@pytest.mark.parametrize("attention", ["none", "luong", "bahdanau"])
def test_groups_compose(attention):
    config = compose([f"attention={attention}"])
    assert config.attention.type == attention
    assert config.data.src == "de" and config.data.tgt == "en"


def test_default_is_bahdanau_with_additive_score():
    config = compose()
    assert (config.attention.type, config.attention.score) == ("bahdanau", "concat")


def test_luong_dot_override_works_with_default_sizes():
    config = compose(["attention=luong", "attention.score=dot"])
    assert config.attention.score == "dot" and config.attention.input_feeding


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key model\.hiden_size"):
        Config.from_dict({"model": {"hiden_size": 3}})


@pytest.mark.parametrize(
    "raw,match",
    [
        ({"model": {"decoder_size": "big"}}, r"model\.decoder_size='big' has the wrong type"),
        ({"model": {"dropout": 1.5}}, r"model\.dropout=1\.5 is out of range"),
        ({"model": {"encoder_size": -4}}, r"model\.encoder_size=-4 is out of range"),
        ({"train": {"batch_tokens": 0}}, r"train\.batch_tokens=0 is out of range"),
        ({"train": {"resume": "yes"}}, r"train\.resume='yes' has the wrong type"),
        ({"attention": {"score": "cosine"}}, r"attention\.score='cosine' is out of range"),
        ({"train": {"max_time": "soon"}}, r"train\.max_time='soon' is not a duration"),
        (
            {"attention": {"type": "luong", "score": "dot"}, "model": {"decoder_size": 100}},
            r"must equal the encoder output size",
        ),
    ],
)
def test_bad_values_are_named(raw, match):
    with pytest.raises(ConfigError, match=match):
        Config.from_dict(raw)


def test_durations():
    assert parse_duration("20m") == 1200 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration("600") == 600 and parse_duration(None) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["attention=bahdanu"], "attention"),  # Hydra names the group and lists the choices
        (["model.hidden_size=5"], "hidden_size"),
        (["model.dropout=2"], "model.dropout=2.0 is out of range"),
    ],
)
def test_cli_config_errors_exit_nonzero_with_message(args, message, tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "last.pt").exists()
