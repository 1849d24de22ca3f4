"""``data.streaming=true``: a Hugging Face dataset streamed into the corpus cache, which must equal
the cache the same corpus read whole gives. The corpus is a local folder of parquet (or JSON
Lines) files the test writes from real Multi30k pairs; the hub is unreachable here."""

import gzip
import json
import logging
import os
import pickle
import random
import subprocess
import sys

import datasets
import pytest

from conftest import CORPORA, REPO, TINY, compose
from seq2seq.data.corpora import load_split
from seq2seq.data.prepare import prepare_data
from seq2seq.data.sources import cache_key, changed
from seq2seq.data.vocab import SentenceSample, sample_sentences
from seq2seq.errors import ConfigError, DataError

ARRAYS = ("src_ids", "tgt_ids", "src_offsets", "tgt_offsets", "decisions")


@pytest.fixture(scope="module")
def pairs():
    """2,400 Multi30k training pairs and 40 validation pairs, with pairs the filter drops mixed in."""
    out = {}
    for split, n in (("train", 2400), ("val", 40)):
        sides = []
        for lang in ("de", "en"):
            with gzip.open(CORPORA / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                sides.append([next(f).rstrip("\n") for _ in range(n)])
        out[split] = list(zip(*sides))
    for i in range(0, 2400, 150):  # empty, over data.filter.max_len, a length ratio over 3
        out["train"][i] = [("", "a dog"), (" ".join(["Hund"] * 30), "dog " * 30), ("ein Hund", "a " * 9 + "dog")][
            i // 150 % 3
        ]
    return out


def write_parquet(pairs, folder):
    """Two training files and a validation file, in the translation layout, as the hub's parquet exports."""
    folder.mkdir()
    train = pairs["train"]
    files = {
        "train-00000-of-00002": train[:1300],
        "train-00001-of-00002": train[1300:],
        "validation-00000-of-00001": pairs["val"],
    }
    for name, rows in files.items():
        ds = datasets.Dataset.from_dict({"translation": [{"de": de, "en": en} for de, en in rows]})
        ds.to_parquet(str(folder / f"{name}.parquet"))
    return folder


def settings(folder, *more):
    return [*TINY, "data=hf", f"data.files={folder}", "data.src=de", "data.tgt=en", "data.vocab.size=300",
            "data.vocab.sample=1500", "data.filter.max_len=25", *more]  # fmt: skip


def test_streaming_a_parquet_folder_prepares_the_same_cache_as_reading_it_whole(pairs, tmp_path, monkeypatch, caplog):
    folder = write_parquet(pairs, tmp_path / "parquet")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEQ2SEQ_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))  # the child's datasets cache: nothing lands there
    entries, names = {}, set()
    for streaming in ("true", "false"):
        config = compose(settings(folder, f"data.streaming={streaming}"))
        with caplog.at_level(logging.INFO, logger="seq2seq"):
            prepare_data(config)
        (entry,) = [p for p in (cache / "corpus").iterdir() if p.is_dir() and not p.name.startswith(".")]
        names.add(entry.name)
        entries[streaming] = entry.rename(tmp_path / f"entry-{streaming}")  # the next run prepares its own
        if streaming == "true":
            assert not list((tmp_path / "hf").rglob("*.arrow"))  # streamed: no Arrow copy of the corpus
            said = [r.getMessage() for r in caplog.records]
            assert any("streamed from" in m and "(parquet files); known by the sha256 of 3 file(s)" in m for m in said)
            caplog.clear()
    assert len(names) == 1  # one cache key: either reading finds the entry the other one wrote
    streamed, whole = entries["true"], entries["false"]
    for name in ARRAYS:  # the ids, lengths and filter decisions, byte for byte
        assert (streamed / f"{name}.bin").read_bytes() == (whole / f"{name}.bin").read_bytes(), name
    decisions = (whole / "decisions.bin").read_bytes()
    assert 2400 > decisions.count(0) > 2300 and len(decisions) == 2400  # the filter dropped some
    small = [pickle.loads((entry / "small.pkl").read_bytes()) for entry in (streamed, whole)]
    assert small[0] == small[1]  # the vocabulary (SentencePiece models and pieces) and the validation split
    manifests = [json.loads((entry / "manifest.json").read_text()) for entry in (streamed, whole)]
    for key in ("content", "train_fingerprint", "valid_fingerprint", "vocab_fingerprint"):
        assert manifests[0][key] == manifests[1][key], key
    # the sample SentencePiece learnt from was the same: the second run found the first run's model by its text
    assert any("SentencePiece model from cache" in r.getMessage() for r in caplog.records)


def test_one_pass_sample_is_the_same_in_any_chunks():
    src, tgt = [f"s{i}" for i in range(20_000)], [f"t{i}" for i in range(20_000)]
    whole = sample_sentences([src, tgt], 3000)
    sample, chunks, start = SentenceSample(3000, 2), random.Random(0), 0
    while start < len(src):  # a stream: both sides of each chunk of pairs, in chunks of any size
        end = start + chunks.randint(1, 900)
        sample.add(0, src[start:end])
        sample.add(1, tgt[start:end])
        start = end
    assert sample.sentences() == whole and len(set(whole)) == 3000
    assert 1300 < sum(s.startswith("s") for s in whole) < 1700  # both sides, each in corpus order
    assert [s for s in whole if s.startswith("s")] == sorted(
        (s for s in whole if s.startswith("s")), key=lambda s: int(s[1:])
    )
    assert sample_sentences([src[:100], tgt[:100]], 3000) == src[:100] + tgt[:100]  # a small corpus: every sentence


def test_a_json_lines_folder_with_named_columns_streams_the_pairs_it_reads_whole(pairs, tmp_path):
    from seq2seq.data.streaming import Stream

    folder = tmp_path / "jsonl"
    folder.mkdir()
    for name, rows in (("train", pairs["train"][:500]), ("validation", pairs["val"])):
        lines = [json.dumps({"german": de, "english": en}, ensure_ascii=False) for de, en in rows]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = compose(settings(folder, "data.columns.src=german", "data.columns.tgt=english", "data.streaming=true")).data
    whole = load_split(cfg, "train")
    stream = Stream(cfg, None)
    streamed = [pair for src, tgt in stream.chunks("train") for pair in zip(src, tgt)]
    assert streamed == list(zip(whole["src"], whole["tgt"])) == pairs["train"][:500]
    with pytest.raises(DataError, match=r"has no split 'test' \(it has train, validation\)"):
        next(stream.chunks("test"))


@pytest.mark.parametrize(
    ("make", "files", "message"),
    [
        ("notes", "DIR", r"^\S+/notes holds no data files to stream; data\.streaming=true reads a folder of parquet"),
        ("saved", "DIR", r"was written by save_to_disk: .* set data\.streaming=false for it"),
        (None, "wmt14", r"^could not stream 'wmt14' \(de-en\) from the Hugging Face hub \(HF_HUB_OFFLINE is set\)"),
    ],
    ids=["no-data-files", "save-to-disk", "hub-offline"],
)
def test_what_cannot_be_streamed_is_one_line(pairs, tmp_path, monkeypatch, make, files, message):
    monkeypatch.setenv("SEQ2SEQ_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / (make or "unused")
    if make == "notes":
        folder.mkdir()
        (folder / "README.md").write_text("the corpus will be here\n")
    elif make == "saved":
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"de": ["Hallo"], "en": ["Hello"]})}).save_to_disk(
            str(folder)
        )
    overrides = settings(folder if files == "DIR" else files, "data.streaming=true", "data.hf_config=de-en")
    with pytest.raises(DataError, match=message) as caught:
        prepare_data(compose(overrides))
    assert "\n" not in str(caught.value)


def test_streaming_another_format_is_one_error_line_at_start(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Hallo\tHello\n")
    result = subprocess.run(
        [sys.executable, "train.py", "data=tsv", f"data.files={pairs}", "data.streaming=true",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: data.streaming=true streams a Hugging Face dataset (data=hf")
    assert "data.format=tsv" in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(ConfigError, match=r"with data\.streaming=true set data\.long_examples\.fraction=0"):
        compose(["data=hf", "data.files=x", "data.streaming=true", "data.long_examples.fraction=0.2"])


def test_a_hub_dataset_on_a_new_commit_is_prepared_again_with_one_line(tmp_path):
    now = {"hub": "wmt14", "config": "de-en", "revision": "b" * 40}
    then = {**now, "revision": "a" * 40}
    line = changed(now, then, tmp_path / "entry")
    assert line == (
        f"hub dataset wmt14 (de-en) at commit {'b' * 40} now, but its cache {tmp_path / 'entry'} was built from "
        f"commit {'a' * 40}; preparing it again"
    )
    assert "reading without streaming" in changed(now, None, tmp_path / "entry")
    whole, streamed = (compose(["data=hf", "data.files=wmt14", f"data.streaming={s}"]).data for s in ("false", "true"))
    assert cache_key(whole, None) == cache_key(streamed, None)  # one entry, read whole or streamed


def test_a_stream_that_reads_differently_the_second_time_is_one_line(pairs, tmp_path, monkeypatch):
    from seq2seq.data import streaming

    folder = write_parquet(pairs, tmp_path / "parquet")
    monkeypatch.setenv("SEQ2SEQ_CACHE_DIR", str(tmp_path / "cache"))
    reads, chunks = [], streaming.Stream.chunks

    def growing(self, split):  # the second read of the training split finds one more pair at its end
        reads.append(split)
        yield from chunks(self, split)
        if reads.count("train") == 2 and split == "train":
            yield ["Ein neuer Satz ."], ["A new sentence ."]

    monkeypatch.setattr(streaming.Stream, "chunks", growing)
    (tmp_path / "entry").mkdir()
    with pytest.raises(DataError, match=r"split train read differently the second time \(2,400 pairs, then 2,401\)"):
        streaming.build_streamed(compose(settings(folder, "data.streaming=true")), None, tmp_path / "entry", None)
