"""What make eval scores: the run's test splits, read without datasets' progress lines."""

import datasets

from conftest import write_corpus
from seq2seq.config import DataConfig
from seq2seq.testsets import load_test_splits, quiet_datasets


def test_test_splits_load_without_datasets_progress_or_log_lines(tmp_path, capfd):
    root = write_corpus(tmp_path / "corpora" / "multi30k", {"test_2016_flickr": 7, "test_2017_flickr": 5}).parent
    data = DataConfig(name="multi30k", root=str(root), test=["test_2016_flickr", "test_2017_flickr"])
    assert datasets.is_progress_bar_enabled()
    splits = load_test_splits(data)  # new files: datasets generates (and would report) every split
    assert {k: len(v[0]) for k, v in splits.items()} == {"test_2016_flickr": 7, "test_2017_flickr": 5}
    out, err = capfd.readouterr()
    assert "Generating" not in out + err and "examples" not in out + err and err == ""
    assert datasets.is_progress_bar_enabled()  # restored for the caller
    with quiet_datasets():
        assert not datasets.is_progress_bar_enabled()
