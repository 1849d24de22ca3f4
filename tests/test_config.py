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
        ({"train": {"resume": "yes"}}, r"train\.resume='yes' is out of range: expected true, false or auto"),
        ({"train": {"resume": 1.5}}, r"train\.resume='1.5' is out of range: expected true, false or auto"),
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


def test_one_value_for_a_group_of_settings_names_its_keys():
    with pytest.raises(ConfigError) as caught:
        Config.from_dict({"data": {"filter": 80}})
    assert str(caught.value) == (
        "data.filter=80 is a group of settings, not one value: set data.filter.max_len, data.filter.max_ratio, "
        "data.filter.ratio_min_len"
    )


def test_durations():
    assert parse_duration("20m") == 1200 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration("600") == 600 and parse_duration(None) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["attention=bahdanu"],
            "error: attention=bahdanu is not an option of attention/; choose bahdanau, luong, none",
        ),
        (["model.hiden_size=512"], "error: unknown config key model.hiden_size (did you mean model."),
        (
            ["data.max_len=0"],
            "error: unknown config key data.max_len (did you mean data.filter.max_len?); keys of data:",
        ),
        (["model.dropout=2"], "error: model.dropout=2.0 is out of range"),
        (["train.seed=1,2"], "error: train.seed=1,2 lists several values; add -m"),
        (
            ["data.split=1.5"],
            "error: data.split=1.5 is a group of settings, not one value: set data.split.valid, data.split.test, "
            "data.split.seed (valid and test: a number of pairs (1, 2, ...) or a fraction of all pairs in (0, 1), "
            "e.g. data.split.valid=0.05 data.split.test=0.05)\n",
        ),
    ],
)
def test_cli_config_errors_are_one_line_exit_2_and_leave_no_run_dir(args, message, tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(message)
    assert not run_dir.exists()


@pytest.mark.slow
def test_a_sweep_with_many_overrides_keeps_folder_names_short(corpus_root, tmp_path):
    from conftest import TINY

    sweep = tmp_path / "sweep"
    args = [sys.executable, "train.py", "-m", *TINY, "train.max_steps=2", "train.seed=1,2", f"hydra.sweep.dir={sweep}"]
    env = {**__import__("os").environ, "SEQ2SEQ_DATA_DIR": str(corpus_root)}
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name[:2] for j in jobs] == ["0_", "1_"] and all(
        len(j.name) <= 110 for j in jobs
    )  # job number + at most 100
    assert jobs[0].name != jobs[1].name and all((j / "best.pt").exists() for j in jobs)
    assert {__import__("json").loads((j / "config.json").read_text())["train"]["seed"] for j in jobs} == {1, 2}


def test_every_subpackage_is_installed_by_a_plain_pip_install():
    """pyproject lists packages explicitly: a wing missing there would ship a wheel that cannot import."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "seq2seq").rglob("__init__.py")}
    assert listed == found


def test_the_slurm_launcher_config_and_its_needs_are_checked_before_anything_runs(tmp_path, monkeypatch):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from seq2seq.overrides import CONFIG_DIR, check_overrides, register

    register()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(
            "config", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.signal_delay_s >= 60 and launcher.max_num_timeout > 0  # warned in time, requeued more than once

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    slurm = ["-m", "hydra/launcher=slurm", "train.resume=auto"]
    with pytest.raises(ConfigError, match=r"^hydra/launcher=slurm submits to SLURM, but sbatch is not on PATH"):
        check_overrides(slurm)
    with pytest.raises(ConfigError, match=r"submits jobs only in a sweep: python train\.py -m hydra/launcher=slurm"):
        check_overrides(slurm[1:])
    with pytest.raises(ConfigError, match=r"add train\.resume=auto so it continues from last\.pt"):
        check_overrides(["-m", "hydra/launcher=submitit_slurm", "train.resume=true"])
    check_overrides(["-m", "hydra/launcher=submitit_local", "train.resume=auto"])  # runs here, no SLURM needed
    (tmp_path / "sbatch").write_text("#!/bin/sh\n")
    (tmp_path / "sbatch").chmod(0o755)
    check_overrides([*slurm, "hydra.launcher.timeout_min=600"])  # on a login node
