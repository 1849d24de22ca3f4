"""The trainer's own memory does not grow with the corpus: its ids stay in the mapped cache (issue 37)."""

import subprocess
import sys

import pytest

from conftest import REPO, TINY

sys.path.insert(0, str(REPO / "scripts"))
from make_corpus import make_corpus  # noqa: E402

SCRIPT = """
import sys
from pathlib import Path
from seq2seq.overrides import compose
from seq2seq.training import Trainer

def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon:")) // 1024

trainer = Trainer(compose(sys.argv[2:]), Path(sys.argv[1]))
trainer.run()
trainer.tracker.close()
print(anon(), len(trainer.train_data.src_ids))
"""


def trainer_anon_mb(pairs: int, tmp_path, corpora) -> tuple[int, int]:
    folder = make_corpus(pairs, tmp_path / f"pairs-{pairs}", corpora)
    overrides = [*TINY, "data=tsv", "data.src=de", "data.tgt=en", f"data.files={folder}/pairs.*.tsv"]
    overrides += ["data.vocab.sample=20000", "train.max_steps=3", "train.valid_every=1000", "train.n_heatmaps=0"]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / f"run-{pairs}"), *overrides],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    anon, kept = map(int, done.stdout.split()[-2:])
    return anon, kept


@pytest.mark.slow
def test_200k_pairs_keep_the_trainers_anonymous_memory_of_a_small_corpus(tmp_path):
    from conftest import CORPORA

    small, kept_small = trainer_anon_mb(2_000, tmp_path, CORPORA)
    large, kept_large = trainer_anon_mb(200_000, tmp_path, CORPORA)
    assert kept_small > 1_900 and kept_large > 190_000
    # as lists of arrays the 200k pairs' ids alone took ~60 MB more; mapped, lengths and one epoch's
    # batch order take ~3 MB
    assert large - small < 25, (small, large)


PLAN = """
import sys
import numpy as np
from seq2seq.data.batching import epoch_batches
from seq2seq.hardware import release_free_memory

def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon:")) / 1024

n = int(sys.argv[1])
rng = np.random.default_rng(0)
src, tgt = rng.integers(5, 60, n).astype(np.uint16), rng.integers(5, 60, n).astype(np.uint16)
before = anon()
batches = epoch_batches(src, tgt, 1600, 1234, 0, 8)
release_free_memory()
print(anon() - before, batches.order.nbytes / 2**20)
"""


def test_planning_an_epoch_of_millions_of_pairs_keeps_only_its_order():
    done = subprocess.run(
        [sys.executable, "-c", PLAN, "3000000"], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    grown, order = map(float, done.stdout.split())
    # the order (4 bytes a pair) stays; the sorting buffers (~60 MB here) go back to the system
    assert order < 12 and grown < order + 8, (grown, order)
