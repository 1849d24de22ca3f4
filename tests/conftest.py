"""Shared fixtures: a slice of real Multi30k, composed configs, one small trained run.

Tests never touch the network (HF_HUB_OFFLINE) and keep every cache in a temporary folder.
The real corpora root comes from $SEQ2SEQ_DATA_DIR, or ../shared/corpora beside the repo.
"""

from __future__ import annotations

import gzip
import os
import signal
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("SEQ2SEQ_DATA_DIR") or REPO.parent / "shared" / "corpora").resolve()
_CACHE = Path(tempfile.mkdtemp(prefix="seq2seq-test-cache-"))
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_DATASETS_CACHE=str(_CACHE / "hf"),
    SEQ2SEQ_CACHE_DIR=str(_CACHE / "seq2seq"),
    MPLBACKEND="Agg",
)
os.environ.pop("SEQ2SEQ_DATA_DIR", None)  # each test says where its corpus is
# A shell without job control starts a background job (`make test &`) with SIGINT ignored, and an
# ignored signal stays ignored in every child: the tests that press Ctrl-C on a training process
# would see it carry on. The tests act as a terminal's user, so their children get the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# A small model that still exercises every part (two layers where layers matter).
TINY = [
    "model.embedding_size=32",
    "model.encoder_size=32",
    "model.decoder_size=64",
    "attention.size=32",
    "data.vocab.size=400",
    "train.batch_tokens=700",
    "train.lr=0.003",
    "train.valid_max_sentences=16",
    "train.log_every=5",
    "train.valid_every=20",
    "train.checkpoint_every=10",
    "train.n_heatmaps=2",
    "train.n_samples=2",
    "train.threads=1",
    "train.precision=fp32",  # the same numerics on every machine; bf16 has its own test
]
ATTENTIONS = ["none", "luong", "bahdanau"]
# The Transformer at the same scale: two layers a side, the same data, batches and steps as TINY.
TINY_TRANSFORMER = [
    "model=transformer",
    "model.d_model=32",
    "model.heads=4",
    "model.ff_size=64",
    "model.encoder_layers=2",
    "model.decoder_layers=2",
    "train.warmup_steps=10",
    *(o for o in TINY if not o.startswith(("model.", "attention."))),
]


def _devices() -> list[str]:
    import torch

    return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


# Where a GPU is visible, the tests that take a device also run their fast paths on it against
# the CPU's plain computation (the packed cuDNN encoder, CUDA kernels); CPU-only machines run cpu.
DEVICES = _devices()


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (tiny tensors gain nothing from two), then restore."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def events(run_dir):
    """Everything in a run directory's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def write_corpus(folder: Path, sizes: dict[str, int], langs=("de", "en")) -> Path:
    """Copy the first lines of real Multi30k splits into ``folder`` ({split}.{lang}.gz)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        for lang in langs:
            with gzip.open(CORPORA / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as src:
                lines = [next(src) for _ in range(n)]
            with gzip.open(folder / f"{split}.{lang}.gz", "wt", encoding="utf-8") as dst:
                dst.writelines(lines)
    return folder


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory) -> Path:
    """A corpus root holding ``multi30k/``: 1,500 training pairs and small val/test splits."""
    root = tmp_path_factory.mktemp("corpora")
    write_corpus(root / "multi30k", {"train": 1500, "val": 40, "test_2016_flickr": 40, "test_2017_flickr": 40})
    return root


def compose(overrides: list[str] = ()):
    """The composed Hydra config as a validated :class:`Config`, as ``train.py`` builds it."""
    from seq2seq.overrides import compose as compose_config

    return compose_config(overrides)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, corpus_root) -> Path:
    """One small Bahdanau run (60 steps) shared by the checkpoint, decoding and CLI tests."""
    from seq2seq.training import train

    out = tmp_path_factory.mktemp("run") / "bahdanau"
    config = compose([*TINY, "attention=bahdanau", f"data.root={corpus_root}", "train.max_steps=60"])
    train(config, out)
    return out
