"""The command line's side of the config: Hydra composition, overrides checked before Hydra sees them,
bounded sweep folder names.

:func:`register` puts the ``model`` and ``train`` defaults, the fields of
:class:`~seq2seq.config.ModelConfig` and :class:`~seq2seq.config.TrainConfig`, into Hydra's
config store (so they are written once, in :mod:`seq2seq.config`), and the ``short_dirname``
resolver. :func:`compose` is the config ``python train.py OVERRIDES...`` trains with.

Hydra answers a mistyped key (``model.hiden_size=512``) with a six-line composition error, exit
status 1 and a hint to add ``+``, which leads to another error. :func:`check_overrides` composes
the config once itself and answers with the project's one line instead: the unknown key, the
nearest known key and the keys of its section. Only the entry points (``train.py``, the
scripts) and the tests import this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seq2seq.config import TRANSFORMER_ATTENTION, Config, ModelConfig, TrainConfig, TransformerConfig
from seq2seq.errors import ConfigError

# Hydra's own flags that take a value or change what runs; with one of them the check stands aside
HYDRA_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir")
HYDRA_FLAGS += ("-cd", "--info", "-i", "--hydra-help", "--help", "-h", "--shell-completion", "-sc")
HYDRA_FLAGS += ("--experimental-rerun",)
MAX_DIRNAME = 100  # characters of a sweep job's folder name (file systems allow 255 bytes)
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # the repository's Hydra presets
# groups whose options are the dataclasses' defaults, written once in seq2seq.config
STORED = {"model": {"lstm": ModelConfig, "transformer": TransformerConfig}, "train": {"default": TrainConfig}}


def register() -> None:
    """``model/lstm``, ``model/transformer`` and ``train/default`` from the dataclasses; the resolvers."""
    store = ConfigStore.instance()
    for group, options in STORED.items():
        for name, schema in options.items():
            store.store(group=group, name=name, node=dataclasses.asdict(schema()))
    OmegaConf.register_new_resolver("short_dirname", short_dirname, replace=True)
    OmegaConf.register_new_resolver("model_name", run_name, replace=True)


def run_name(family: str, attention: str) -> str:
    """A run folder's suffix: the attention wiring for the LSTMs (``bahdanau``), else the family (``transformer``)."""
    return attention if family == "lstm" else family


def compose(overrides: Sequence[str] = ()) -> Config:
    """The config ``python train.py OVERRIDES...`` trains with, composed by Hydra and validated."""
    return Config.from_dict(OmegaConf.to_container(_compose(list(overrides)), resolve=True))


def group_options(group: str) -> list[str] | None:
    """The options of a config group (``attention`` -> bahdanau, luong, none), or None if ``group`` is none."""
    if group in STORED:
        return list(STORED[group])
    if (CONFIG_DIR / group).is_dir():
        return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    return None


def check_overrides(args: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for an override that names no key or group option of ``configs/``."""
    if any(a.split("=", 1)[0] in HYDRA_FLAGS for a in args):
        return
    texts = [a for a in args if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(texts)
    except HydraException as error:
        raise ConfigError(f"cannot read the overrides: {str(error).splitlines()[0]}") from None
    groups, keys = [], []
    sweeping = any(a in ("-m", "--multirun") for a in args)
    for override in parsed:
        key = override.key_or_group
        if key == "hydra/launcher" and str(override.value()) in SUBMITIT_LAUNCHERS:
            _check_submitit(str(override.value()), sweeping, parsed)
        if key.startswith("hydra") or override.is_delete():
            continue
        if override.is_sweep_override() and not sweeping:
            raise ConfigError(f"{override.input_line} lists several values; add -m to run one job for each")
        value = next(iter(override.sweep_string_iterator())) if override.is_sweep_override() else override.value()
        text = f"{'+' if override.is_add() else ''}{key}={value}"
        options = group_options(key) if "." not in key else None
        if options is not None:
            if str(value) not in options:
                raise ConfigError(f"{key}={value} is not an option of {key}/; choose {', '.join(options)}")
            groups.append(text)
        else:
            keys.append((key, text, override.is_add()))
    base = _compose(groups)
    for key, _, added in keys:
        if not added and OmegaConf.select(base, key, default=_ABSENT) is _ABSENT:
            raise ConfigError(unknown_key_message(base, key))
    try:
        _compose([*groups, *(text for _, text, _ in keys)])
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"cannot apply the overrides: {str(error).splitlines()[0]}") from None


_ABSENT = object()
SUBMITIT_LAUNCHERS = ("slurm", "submitit_slurm", "submitit_local")  # configs/hydra/launcher/slurm.yaml and the plugin's


def _check_submitit(launcher: str, sweeping: bool, parsed: list) -> None:
    """The launcher's needs, each one line here rather than a traceback in the parent or a job's log."""
    given = f"hydra/launcher={launcher}"
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        raise ConfigError(f"{given} needs the submitit launcher: pip install -e '.[slurm]' (hydra-submitit-launcher)")
    if not sweeping:
        raise ConfigError(f"{given} submits jobs only in a sweep: python train.py -m {given} train.resume=auto ...")
    resume = [str(o.value()) for o in parsed if o.key_or_group == "train.resume"]
    if resume[-1:] != ["auto"]:
        raise ConfigError(
            f"{given} starts a preempted or timed-out job again with the same command; add train.resume=auto "
            "so it continues from last.pt"
        )
    if launcher != "submitit_local" and shutil.which("sbatch") is None:
        raise ConfigError(
            f"{given} submits to SLURM, but sbatch is not on PATH here; run it on the cluster's login node "
            "(hydra/launcher=submitit_local runs the same jobs on this machine)"
        )


def _compose(overrides: list[str]) -> DictConfig:
    register()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def unknown_key_message(cfg: DictConfig, key: str) -> str:
    """``unknown config key model.hiden_size (did you mean model.hidden_size?); keys of model: ...``;
    a key of the other model family says which family it belongs to."""
    family = OmegaConf.select(cfg, "model.family", default=None)
    if key.startswith("model.") and family is not None:
        for other, schema in STORED["model"].items():
            if other != family and key.split(".")[1] in {f.name for f in dataclasses.fields(schema)}:
                keys = ", ".join(str(k) for k in cfg.model.keys())
                return f"{key} is a setting of model={other}; model={family} has {keys}"
    if key.startswith("attention.") and key.count(".") == 1:
        owners = attention_options_with(key.split(".")[1])
        if owners and family == "transformer":
            return (
                f"{key} is a setting of attention={'/'.join(owners)}, the LSTM decoders' wiring (model=lstm); "
                + TRANSFORMER_ATTENTION
            )
        if owners:
            chosen = OmegaConf.select(cfg, "attention.type", default="?")
            keys = ", ".join(str(k) for k in cfg.attention.keys())
            return f"{key} is a setting of attention={'/'.join(owners)}; attention={chosen} has {keys}"
    known = _leaves(cfg)
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf]
    nearest = same_leaf or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {nearest[0]}?)" if nearest else ""
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    section = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if isinstance(section, DictConfig):
        where = f"keys of {parent}" if parent else "sections"
        return f"unknown config key {key}{hint}; {where}: {', '.join(str(k) for k in section.keys())}"
    return f"unknown config key {key}{hint}; sections: {', '.join(str(k) for k in cfg.keys())}"


def attention_options_with(leaf: str) -> list[str]:
    """The ``attention=`` presets (configs/attention/*.yaml) that have the setting ``leaf``."""
    return [
        preset.stem
        for preset in sorted((CONFIG_DIR / "attention").glob("*.yaml"))
        if leaf in (OmegaConf.load(preset) or {})
    ]


def _leaves(cfg: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        if isinstance(v, DictConfig):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def short_dirname(override_dirname: str) -> str:
    """A sweep job's folder name from its overrides: readable, without path separators, at most 100 characters.

    Longer ones keep their first 91 characters and a hash of the whole (two jobs never share one);
    every run's ``config.json`` holds its full configuration.
    """
    name = override_dirname.replace(os.sep, "_") or "defaults"
    if len(name) <= MAX_DIRNAME:
        return name
    return f"{name[: MAX_DIRNAME - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
