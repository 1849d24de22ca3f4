import gzip
import logging
import subprocess
import sys
from array import array

import numpy as np
import pytest

from conftest import CORPORA, TINY, compose, write_corpus
from seq2seq.config import DataConfig, FilterConfig
from seq2seq.data.corpora import filter_pairs, load_split
from seq2seq.data.prepare import prepare_data
from seq2seq.data.store import MappedSplit
from seq2seq.data.vocab import Vocab
from seq2seq.errors import DataError


def test_local_split_has_aligned_src_and_tgt(corpus_root):
    ds = load_split(DataConfig(root=str(corpus_root)), "val")
    assert ds.column_names == ["src", "tgt"] and ds.num_rows == 40
    with (
        gzip.open(CORPORA / "multi30k" / "val.de.gz", "rt") as de,
        gzip.open(CORPORA / "multi30k" / "val.en.gz", "rt") as en,
    ):
        assert ds[3] == {
            "src": [next(de) for _ in range(4)][-1].rstrip("\n"),
            "tgt": [next(en) for _ in range(4)][-1].rstrip("\n"),
        }


def test_env_variable_points_to_the_root(corpus_root, monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_DATA_DIR", str(corpus_root))
    assert load_split(DataConfig(), "test_2016_flickr").num_rows == 40


def test_language_pair_from_config(tmp_path):
    write_corpus(tmp_path / "multi30k", {"val": 10}, langs=("en", "fr"))
    ds = load_split(DataConfig(root=str(tmp_path), src="en", tgt="fr"), "val")
    assert ds.num_rows == 10 and ds[0]["src"].startswith("A ")


def test_misaligned_files_name_both(tmp_path):
    folder = write_corpus(tmp_path / "multi30k", {"val": 10})
    with gzip.open(folder / "val.en.gz", "wt") as f:
        f.write("only one line\n")
    with pytest.raises(DataError, match=r"val\.de\.gz has 10 lines but .*val\.en\.gz has 1"):
        load_split(DataConfig(root=str(tmp_path)), "val")


def test_missing_folder_and_split_say_how_to_fix(tmp_path):
    with pytest.raises(DataError, match=r"multi30k does not exist; set SEQ2SEQ_DATA_DIR"):
        load_split(DataConfig(root=str(tmp_path)), "val")
    write_corpus(tmp_path / "multi30k", {"val": 5})
    (tmp_path / "multi30k" / "README.md").write_text("about the corpus")
    with pytest.raises(DataError, match=r"train\.de\.gz not found.* has languages de, en and splits val$"):
        load_split(DataConfig(root=str(tmp_path)), "train")
    with pytest.raises(DataError, match=r"val\.xx\.gz not found.* has languages de, en and splits val$"):
        load_split(DataConfig(root=str(tmp_path), src="xx"), "val")


def test_non_utf8_file_is_a_clear_error(tmp_path):
    folder = write_corpus(tmp_path / "multi30k", {"val": 3})
    with gzip.open(folder / "val.de.gz", "wb") as f:
        f.write(b"gut\n\xff\xfe kaputt\nende\n")
    with pytest.raises(DataError, match="UTF-8"):
        load_split(DataConfig(root=str(tmp_path)), "val")


def test_no_local_root_and_no_hub_names_both():
    # SEQ2SEQ_DATA_DIR is unset and HF_HUB_OFFLINE=1 (conftest): the hub cannot be reached.
    with pytest.raises(DataError) as error:
        load_split(compose().data, "train")
    assert "SEQ2SEQ_DATA_DIR" in str(error.value) and "bentrevett/multi30k" in str(error.value)


def test_filter_drops_and_counts(corpus_root):
    ds = load_split(DataConfig(root=str(corpus_root)), "val")
    ds = ds.add_item({"src": "", "tgt": "empty source"}).add_item({"src": "a " * 100, "tgt": "b " * 100})
    ds = ds.add_item({"src": "ein", "tgt": "one two three four five six seven eight nine ten"})
    kept, report = filter_pairs(ds, FilterConfig(max_len=80, max_ratio=3.0))
    assert (report.total, report.kept, report.empty, report.too_long, report.bad_ratio) == (43, 40, 1, 1, 1)
    assert kept.num_rows == 40


def test_filter_that_removes_everything_is_an_error(corpus_root):
    ds = load_split(DataConfig(root=str(corpus_root)), "val")
    with pytest.raises(DataError, match="removed every training pair"):
        filter_pairs(ds, FilterConfig(max_len=1))


def test_prepare_data_maps_the_training_ids_and_hands_back_compact_validation_ids(corpus_root, caplog):
    config = compose([*TINY, f"data.root={corpus_root}"])
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        state, train, valid = prepare_data(config)
    vocab = Vocab.from_state_dict(state)
    assert len(train.src_ids) == len(train.tgt_ids) == 1500 and train.src_texts == []  # training needs no texts
    assert len(valid.src_ids) == len(valid.src_texts) == 16  # train.valid_max_sentences
    assert isinstance(train, MappedSplit) and isinstance(train.src_ids.ids, np.memmap)  # ids stay in the cache
    assert all(isinstance(ids, array) and ids.typecode == "i" for ids in valid.src_ids + valid.tgt_ids)
    assert [list(ids) for ids in valid.src_ids] == vocab.encode_src(valid.src_texts)
    assert [list(ids) for ids in valid.tgt_ids] == vocab.encode_tgt(valid.tgt_texts)
    assert any("kept 1500 of 1500 training pairs" in r.getMessage() for r in caplog.records)  # the child's log
    again, _, _ = prepare_data(config, state)  # a resumed run's vocabulary is used as it is
    assert again == state


def test_prepare_data_raises_the_childs_data_error(tmp_path):
    write_corpus(tmp_path / "multi30k", {"train": 20, "val": 5})
    (tmp_path / "multi30k" / "val.en.gz").write_bytes(gzip.compress(b"one line\n"))
    with pytest.raises(DataError, match="misaligned corpus: .*val.de.gz has 5 lines"):
        prepare_data(compose([*TINY, f"data.root={tmp_path}"]))


def test_the_training_process_never_imports_datasets(corpus_root, tmp_path):
    """`datasets` (pyarrow, pandas: ~0.1 GB resident) stays in the child that prepares the corpus."""
    script = (
        "import sys; from seq2seq.overrides import compose; from seq2seq.training import Trainer; "
        f"t = Trainer(compose({[*TINY, f'data.root={corpus_root}']!r}), __import__('pathlib').Path({str(tmp_path)!r})); "
        "t.tracker.close(); print(len(t.train_data.src_ids), 'datasets' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1500", "False"]


def test_a_byte_order_mark_is_dropped_and_said_once(tmp_path, caplog):
    folder = tmp_path / "multi30k"
    folder.mkdir()
    (folder / "val.de").write_text("\ufeffEin Hund.\nZwei Katzen.\n", encoding="utf-8")
    (folder / "val.en").write_text("A dog.\nTwo cats.\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        ds = load_split(DataConfig(root=str(tmp_path)), "val")
    assert list(ds["src"]) == ["Ein Hund.", "Zwei Katzen."] and list(ds["tgt"]) == ["A dog.", "Two cats."]
    assert sum("byte-order mark" in r.getMessage() for r in caplog.records) == 1


def test_a_lone_carriage_return_is_named_by_its_line_as_wc_counts_it(tmp_path):
    folder = tmp_path / "multi30k"
    folder.mkdir()
    (folder / "val.de").write_bytes(b"Ein Hund.\r\nZwei\rKatzen.\nDrei.\n")  # CRLF is fine, a lone CR not
    (folder / "val.en").write_bytes(b"A dog.\nTwo cats.\nThree.\n")
    with pytest.raises(DataError, match=r"val\.de line 2 \(as wc -l counts\) contains '\\r'"):
        load_split(DataConfig(root=str(tmp_path)), "val")
