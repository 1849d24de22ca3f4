"""The prepared corpus cache: encoded once, memory-mapped, shared, rebuilt when damaged or outdated."""

import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, TINY, compose, write_corpus
from seq2seq.data import build, prepare
from seq2seq.data.batching import collate, epoch_batches, round_up
from seq2seq.data.corpora import filter_pairs, load_split
from seq2seq.data.prepare import prepare_data
from seq2seq.data.vocab import build_vocab
from seq2seq.errors import DataError

# A subprocess that prepares the corpus and prints what it got: the ids' hash and its log lines.
SCRIPT = """
import hashlib, json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from seq2seq.overrides import compose
from seq2seq.data.prepare import prepare_data
vocab, train, valid = prepare_data(compose(json.loads(sys.argv[1])))
digest = hashlib.sha256(train.src_ids.ids.tobytes() + train.tgt_ids.ids.tobytes()).hexdigest()
maps = open("/proc/self/maps").read()
print(json.dumps({"ids": digest, "mapped": str(train.src_ids.ids.filename) in maps, "file": str(train.src_ids.ids.filename)}))
"""


def run_prepare(overrides, env=None, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, json.dumps(overrides)], env=env, text=True, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs,
    )  # fmt: skip


def entries(cache):
    return sorted(p.name for p in (cache / "corpus").iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SEQ2SEQ_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def counted(monkeypatch):
    """Prepare in this process (no child), counting the filter and encoding calls."""
    calls = {"filter": 0, "encode": 0}
    import seq2seq.data.corpora as corpora

    def count(name, function):
        def counting(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return counting

    monkeypatch.setattr(corpora, "filter_decisions", count("filter", corpora.filter_decisions))
    monkeypatch.setattr(build.Spool, "encode", count("encode", build.Spool.encode))
    monkeypatch.setattr(
        prepare, "_run_child", lambda config, vocab, tmp, content: build.build_entry(config, vocab, tmp, content)
    )
    return calls


def _old_token_batches(src_lens, tgt_lens, batch_tokens, generator, multiple):
    """The batching of the lists-of-arrays days, kept here as the reference (seq2seq 7ab8ca9)."""
    order = torch.randperm(len(src_lens), generator=generator).tolist()
    src_len = [round_up(s + 1, multiple) for s in src_lens]
    tgt_len = [round_up(t + 1, multiple) for t in tgt_lens]
    order.sort(key=lambda i: (tgt_len[i], src_len[i]))
    batches, current, longest = [], [], 0
    for i in order:
        size = max(src_len[i], tgt_len[i])
        if current and max(longest, size) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def test_mapped_batches_equal_the_in_memory_pipelines(corpus_root, cache):
    config = compose([*TINY, f"data.root={corpus_root}", "data.filter.max_len=12"])  # the filter drops some
    state, train, _ = prepare_data(config)
    kept, _ = filter_pairs(load_split(config.data, "train"), config.data.filter)  # the pipeline before the cache
    vocab = build_vocab(list(kept["src"]), list(kept["tgt"]), config.data.vocab)
    assert vocab.state_dict() == state
    src, tgt = vocab.encode_src(list(kept["src"])), vocab.encode_tgt(list(kept["tgt"]))
    assert len(train.src_ids) == len(src) < 1500
    for epoch in (0, 3):
        generator = torch.Generator().manual_seed(1234 * 100_003 + epoch)
        old = _old_token_batches([len(s) for s in src], [len(t) for t in tgt], 700, generator, 4)
        new = epoch_batches(*train.lengths(), 700, 1234, epoch, 4)
        assert list(new) == old
        for index in old[:20]:
            a = collate([src[i] for i in index], [tgt[i] for i in index], 4)
            b = collate([train.src_ids[i] for i in index], [train.tgt_ids[i] for i in index], 4)
            assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("src", "src_lens", "tgt_in", "tgt_out"))


def test_a_warm_start_and_a_resume_neither_filter_nor_encode(corpus_root, cache, counted, caplog):
    config = compose([*TINY, f"data.root={corpus_root}"])
    state, first, valid = prepare_data(config)
    assert counted == {"filter": 1, "encode": 1}
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        again, second, valid_again = prepare_data(config)
        resumed, third, _ = prepare_data(config, state)  # a resumed run's vocabulary, the same one
    assert counted == {"filter": 1, "encode": 1}
    assert again == resumed == state and len(entries(cache)) == 1
    assert np.array_equal(first.src_ids.ids, second.src_ids.ids) and first.fingerprint == third.fingerprint
    assert valid.src_texts == valid_again.src_texts and valid.fingerprint == valid_again.fingerprint
    assert any("corpus from cache" in r.getMessage() and "kept 1500 of 1500" in r.getMessage() for r in caplog.records)


def test_a_killed_write_is_rebuilt_not_read(corpus_root, cache, counted, caplog):
    overrides = [*TINY, f"data.root={corpus_root}"]
    killed = run_prepare(overrides, {"SEQ2SEQ_CACHE_FAULT": "kill"}, start_new_session=True)
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL  # the preparer and its child, as kill -9 of the job
    assert entries(cache) == [] and any(p.name.startswith(".tmp-") for p in (cache / "corpus").iterdir())
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        _, train, _ = prepare_data(compose(overrides))
    assert any("removed 1 unfinished corpus cache" in r.getMessage() for r in caplog.records)
    assert counted["encode"] == 1 and len(entries(cache)) == 1 and len(train.src_ids) == 1500
    assert not any(p.name.startswith(".tmp-") for p in (cache / "corpus").iterdir())


def test_a_damaged_entry_is_rebuilt_with_one_line(corpus_root, cache, counted, caplog):
    config = compose([*TINY, f"data.root={corpus_root}"])
    _, train, _ = prepare_data(config)
    expected = train.src_ids[7]
    path = cache / "corpus" / entries(cache)[0] / "src_ids.bin"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        _, train, _ = prepare_data(config)
    damaged = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(damaged) == 1 and "src_ids.bin does not match its checksum" in damaged[0], damaged
    assert counted["encode"] == 2 and train.src_ids[7] == expected


def test_two_preparers_at_once_give_one_good_cache(corpus_root, cache):
    overrides = [*TINY, f"data.root={corpus_root}"]
    runs = [run_prepare(overrides) for _ in range(2)]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    results = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    assert results[0]["ids"] == results[1]["ids"] and results[0]["file"] == results[1]["file"]
    logs = "".join(err for _, err in outputs)
    assert logs.count("prepared multi30k/de-en") == 1 and logs.count("corpus from cache") == 1  # one built, one waited
    phases = next(line for line in logs.splitlines() if line.startswith("prepared multi30k/de-en"))
    assert all(f"{phase} " in phases for phase in ("read", "filter", "SentencePiece", "encode", "write"))  # train.log
    assert "pairs/s" not in logs and "it/s" not in logs  # tqdm's bars only on a terminal (disable=None)
    assert len(entries(cache)) == 1 and not [p for p in (cache / "corpus").iterdir() if p.name.startswith(".")]


def test_two_ranks_map_the_same_files(corpus_root, cache):
    overrides = [*TINY, f"data.root={corpus_root}"]
    prepare_data(compose(overrides))  # rank 0 prepares; the others wait at the barrier, then map
    runs = [run_prepare(overrides) for _ in range(2)]
    results = [json.loads(run.communicate(timeout=180)[0].splitlines()[-1]) for run in runs]
    assert all(r["mapped"] for r in results)  # in /proc/self/maps: page-cache pages, one copy for both
    assert results[0]["file"] == results[1]["file"] and results[0]["ids"] == results[1]["ids"]


def test_a_changed_corpus_file_is_prepared_again_and_said(corpus_root, cache, counted, tmp_path, caplog):
    root = tmp_path / "corpora"
    shutil.copytree(corpus_root, root)
    config = compose([*TINY, f"data.root={root}"])
    _, before, _ = prepare_data(config)
    path = root / "multi30k" / "train.en.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    path.write_bytes(gzip.compress("".join(lines[1:] + lines[:1]).encode()))  # same size, different text
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        _, after, _ = prepare_data(config)
    said = [r.getMessage() for r in caplog.records if "changed since its cache" in r.getMessage()]
    assert len(said) == 1 and "train.en.gz" in said[0]
    assert counted["encode"] == 2 and before.fingerprint != after.fingerprint  # resume refuses it, as before
    assert len(entries(cache)) == 1  # the outdated entry was replaced


def test_an_unwritable_cache_dir_is_one_line(corpus_root, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SEQ2SEQ_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(DataError, match=r"cache directory .*a-file/cache/corpus is not writable .*SEQ2SEQ_CACHE_DIR"):
        prepare_data(compose([*TINY, f"data.root={corpus_root}"]))


def test_a_full_disk_is_one_line_and_leaves_nothing(corpus_root, cache):
    with pytest.raises(DataError, match=r"could not write the prepared corpus into .*disk full.*SEQ2SEQ_CACHE_DIR"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SEQ2SEQ_CACHE_FAULT", "full")
            prepare_data(compose([*TINY, f"data.root={corpus_root}"]))
    assert entries(cache) == [] and not [p for p in (cache / "corpus").iterdir() if p.name.startswith(".tmp")]


def test_ctrl_c_while_preparing_exits_130_and_keeps_nothing(corpus_root, cache):
    run = run_prepare([*TINY, f"data.root={corpus_root}"], {"SEQ2SEQ_CACHE_FAULT": "int"}, start_new_session=True)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted while preparing")
    assert entries(cache) == [] and not [p for p in (cache / "corpus").iterdir() if p.name.startswith(".tmp")]


def test_sentencepiece_learns_from_a_seeded_sample():
    from seq2seq.data.vocab import sample_sentences

    src, tgt = [f"s{i}" for i in range(100)], [f"t{i}" for i in range(50)]
    assert sample_sentences([src, tgt], 0) == sample_sentences([src, tgt], 150) == src + tgt
    sample = sample_sentences([src, tgt], 30)
    assert len(sample) == 30 == len(set(sample)) and sample == sample_sentences([src, tgt], 30)
    assert any(s.startswith("t") for s in sample) and sample != sample_sentences([src, tgt], 30, seed=2)


def test_a_corpus_in_other_files_gets_its_own_entry(tmp_path, cache):
    write_corpus(tmp_path / "a" / "multi30k", {"train": 1500, "val": 20})
    write_corpus(tmp_path / "b" / "multi30k", {"train": 1500, "val": 30})
    for root in ("a", "b"):
        prepare_data(compose([*TINY, f"data.root={tmp_path / root}"]))
    assert len(entries(cache)) == 2


@pytest.mark.slow
def test_resume_after_the_cache_is_rebuilt_is_bit_exact(corpus_root, cache, tmp_path, one_thread):
    from seq2seq.training import train
    from seq2seq.training.checkpoint import load_checkpoint

    base = [*TINY, f"data.root={corpus_root}", "train.valid_every=1000", "train.checkpoint_every=1000"]
    base += ["train.scheduler=plateau", "model.dropout=0.2"]
    train(compose([*base, "train.max_steps=12"]), tmp_path / "straight")
    train(compose([*base, "train.max_steps=6"]), tmp_path / "split")
    shutil.rmtree(cache / "corpus")  # the next start prepares the corpus again, vocabulary from last.pt
    train(compose([*base, "train.max_steps=12", "train.resume=true"]), tmp_path / "split")
    assert entries(cache)  # it was rebuilt
    a, b = (load_checkpoint(tmp_path / run / "last.pt") for run in ("straight", "split"))
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
