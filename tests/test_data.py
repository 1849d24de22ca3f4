import gzip

import pytest

from conftest import CORPORA, compose, write_corpus
from seq2seq.config import DataConfig, FilterConfig
from seq2seq.data import filter_pairs, load_split
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
    with pytest.raises(DataError, match=r"train\.de\.gz not found"):
        load_split(DataConfig(root=str(tmp_path)), "train")


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
