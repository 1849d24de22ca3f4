"""Your data: TSV, CSV, JSON Lines and Hugging Face datasets (on disk), and a held-out split for a
corpus that is one file. Each format is a small real file the test writes: a slice of the shared
Tatoeba file (the PyTorch tutorial's corpus) or of Multi30k."""

import csv
import gzip
import json
import re
import subprocess
import sys

import datasets
import pytest

from conftest import CORPORA, REPO, TINY, compose
from seq2seq.data.corpora import load_split
from seq2seq.errors import ConfigError, DataError
from seq2seq.training import train
from seq2seq.training.checkpoint import load_checkpoint

TATOEBA = CORPORA / "tatoeba-eng-fra" / "fra-eng.tsv.gz"


@pytest.fixture(scope="module")
def tatoeba_lines():
    """Every 40th pair of the real file (about 3,600, short and long), as (English, French)."""
    with gzip.open(TATOEBA, "rt", encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for i, line in enumerate(f) if i % 40 == 0]
    assert all(len(r) == 2 for r in rows)
    return rows


@pytest.fixture(scope="module")
def multi30k():
    """The first Multi30k pairs of each split, as {split: [(de, en), ...]}."""
    out = {}
    for split, n in (("train", 400), ("val", 30), ("test_2016_flickr", 30)):
        sides = []
        for lang in ("de", "en"):
            with gzip.open(CORPORA / "multi30k" / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                sides.append([next(f).rstrip("\n") for _ in range(n)])
        out[split] = list(zip(*sides))
    return out


def data(*overrides):
    return compose([*TINY, *overrides]).data


def test_a_tab_separated_file_in_the_manythings_layout(tatoeba_lines, tmp_path):
    path = tmp_path / "eng-fra.txt"  # en<TAB>fr<TAB>attribution, as manythings.org's newer exports
    path.write_text(
        "".join(
            f"{en}\t{fr}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}\n"
            for i, (en, fr) in enumerate(tatoeba_lines)
        )
    )
    tsv = [
        "data=tsv",
        f"data.files={path}",
        "data.src=en",
        "data.tgt=fr",
        "data.split.valid=200",
        "data.split.test=0.05",
    ]
    train_ds, valid, test = (load_split(data(*tsv), s) for s in ("train", "valid", "test"))
    assert train_ds.num_rows + valid.num_rows + test.num_rows == len(tatoeba_lines)
    assert 200 <= valid.num_rows < 210 and round(0.05 * len(tatoeba_lines)) <= test.num_rows
    every = {(s, t) for ds in (train_ds, valid, test) for s, t in zip(ds["src"], ds["tgt"])}
    assert every == {tuple(r) for r in tatoeba_lines}  # quotes and punctuation read as text
    sources = [set(ds["src"]) for ds in (train_ds, valid, test)]
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2]) and not (sources[1] & sources[2])
    assert load_split(data(*tsv), "valid")["src"] == valid["src"]  # the same split every time
    other = load_split(data(*tsv, "data.split.seed=2"), "valid")
    assert other["src"] != valid["src"]
    reverse = load_split(
        data(
            "data=tsv", f"data.files={path}", "data.src=fr", "data.tgt=en", "data.columns.src=1", "data.columns.tgt=0"
        ),
        "train",
    )
    assert set(zip(reverse["tgt"], reverse["src"])) <= {tuple(r) for r in tatoeba_lines}  # French -> English


def test_the_tatoeba_preset_reads_the_shared_file_and_keeps_repeated_sources_together(caplog):
    caplog.set_level("INFO", logger="seq2seq")
    cfg = compose(["data=tatoeba_eng_fra", f"data.root={CORPORA}"]).data
    valid, test = load_split(cfg, "valid"), load_split(cfg, "test")
    assert 2000 <= valid.num_rows < 2020 and 2000 <= test.num_rows < 2020
    assert "share their source with another pair and were kept in one split" in caplog.text
    assert not set(valid["src"]) & set(test["src"])


def test_a_csv_file_with_a_header_and_one_file_per_split(multi30k, tmp_path):
    for split, rows in multi30k.items():
        with open(tmp_path / f"pairs.{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "german", "english"])
            writer.writerows((i, de, en) for i, (de, en) in enumerate(rows))
    cfg = data(
        "data=csv",
        f"data.files={tmp_path}/pairs.*.csv",
        "data.src=de",
        "data.tgt=en",
        "data.columns.src=german",
        "data.columns.tgt=english",
        "data.valid=val",
    )
    ds = load_split(cfg, "val")
    assert list(zip(ds["src"], ds["tgt"])) == multi30k["val"]  # commas and quotes inside fields survive


def test_json_lines_with_a_translation_dict_or_named_fields(multi30k, tmp_path):
    nested, flat = tmp_path / "nested.jsonl", tmp_path / "flat.jsonl"
    nested.write_text("".join(json.dumps({"translation": {"de": de, "en": en}}) + "\n" for de, en in multi30k["train"]))
    flat.write_text(
        "".join(
            json.dumps({"source": de, "target": en, "id": i}) + "\n" for i, (de, en) in enumerate(multi30k["train"])
        )
    )
    split = ["data.split.valid=20", "data.split.test=20"]
    a = [
        load_split(data("data=jsonl", f"data.files={nested}", "data.src=de", "data.tgt=en", *split), s)
        for s in ("train", "valid", "test")
    ]
    b = load_split(
        data(
            "data=jsonl",
            f"data.files={flat}",
            "data.src=de",
            "data.tgt=en",
            "data.columns.src=source",
            "data.columns.tgt=target",
            *split,
        ),
        "train",
    )
    assert a[0]["src"] == b["src"] and a[0]["tgt"] == b["tgt"]
    assert sorted(p for ds in a for p in zip(ds["src"], ds["tgt"])) == sorted(multi30k["train"])
    reverse = load_split(data("data=jsonl", f"data.files={nested}", "data.src=en", "data.tgt=de", *split), "train")
    assert set(zip(reverse["tgt"], reverse["src"])) <= set(multi30k["train"])


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            '{"en": "Hello.", "fr": "Bonjour\n',
            r"line 10 is not valid JSON \(Unterminated string starting at: column 24\): ",
        ),
        ('{"en": "Hello." "fr": "Bonjour."}\n', r"line 10 is not valid JSON \(Expecting ',' delimiter: column 17\): "),
        ('["Hello.", "Bonjour."]\n', r"line 10 is a JSON list, not an object: '\[\"Hello\.\", \"Bonjour\.\"\]'"),
        (b'{"en": "Hello.", "fr": "Bonjour \xe9."}\n', r"line 10 is not valid UTF-8"),
    ],
    ids=["cut-short", "no-comma", "not-an-object", "not-utf8"],
)
def test_a_broken_json_lines_line_is_named_with_its_file_and_number(tmp_path, capfd, broken, message):
    path = tmp_path / "pairs.jsonl"
    good = [json.dumps({"en": f"Line {i}.", "fr": f"Ligne {i}."}) + "\n" for i in range(1, 13)]
    lines = [line.encode() for line in good]
    lines[9] = broken if isinstance(broken, bytes) else broken.encode()
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError) as caught:
        load_split(data("data=jsonl", f"data.files={path}", "data.src=en", "data.tgt=fr"), "train")
    assert re.match(rf"{re.escape(str(path))} {message}", str(caught.value)) and "\n" not in str(caught.value)
    assert "row 9" not in capfd.readouterr().err  # datasets counts rows from 0: its line would mislead


def hf_dataset(multi30k):
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"translation": [{"de": de, "en": en} for de, en in multi30k[split]]})
            for name, split in (("train", "train"), ("validation", "val"), ("test", "test_2016_flickr"))
        }
    )


def test_a_hugging_face_dataset_saved_to_disk_or_as_parquet(multi30k, tmp_path):
    saved, parquet = tmp_path / "saved", tmp_path / "parquet"
    hf_dataset(multi30k).save_to_disk(str(saved))
    parquet.mkdir()
    for name, ds in hf_dataset(multi30k).items():
        ds.to_parquet(str(parquet / f"{name}-00000-of-00001.parquet"))
    for folder in (saved, parquet):
        cfg = data("data=hf", f"data.files={folder}", "data.src=de", "data.tgt=en")
        ds = load_split(cfg, "validation")
        assert list(zip(ds["src"], ds["tgt"])) == multi30k["val"]
    with pytest.raises(DataError, match=r"has no split 'valid' \(it has train, validation, test\)"):
        load_split(data("data=hf", f"data.files={saved}", "data.src=de", "data.tgt=en", "data.valid=valid"), "valid")
    with pytest.raises(DataError, match=r"translation column has no 'fr' \(it has de, en\)"):
        load_split(data("data=hf", f"data.files={saved}", "data.src=fr", "data.tgt=en"), "train")


def test_a_hub_id_while_offline_is_one_line_naming_the_way_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as caught:
        load_split(data("data=hf", "data.files=wmt14", "data.hf_config=de-en", "data.src=de", "data.tgt=en"), "train")
    message = str(caught.value)
    assert "HF_HUB_OFFLINE is set" in message and "save_to_disk" in message and "data.files=DIR" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "overrides", "pattern"),
    [
        (
            "a\tb\nc\td\ne\nf\tg\n",
            [],
            r"pairs\.tsv line 3 has 1 column\(s\), but data\.columns needs column 1.*no tab in it",
        ),
        (
            "a,b\nc,d\n",
            [],
            r"no tab in its first line \(its first line is 'a,b'\); is data\.format=tsv the file's format",
        ),
        (
            "a\tb\nc\td\n",
            ["data.columns.src=3"],
            r"has no column '3' for src \(data\.columns\.src\); it has columns 0 to 1",
        ),
        ("a\tb\nc\td\n", ["data.split.valid=1", "data.split.test=1"], r"leaves no training pairs"),
        ("a\tb\nc\td\n", ["data.split.valid=0.01"], r"data\.split\.valid=0\.01 leaves that split empty"),
        ("", [], r"pairs\.tsv is empty"),
        (
            "a\tb\nc\td\n",
            ["data.columns.src=1", "data.columns.tgt=1"],
            r"data\.columns\.src and data\.columns\.tgt both name column 1 of .*pairs\.tsv: the source would be "
            "its own target; give each side its column",
        ),
    ],
    ids=[
        "missing-column",
        "wrong-delimiter",
        "no-such-column",
        "split-too-large",
        "split-empty",
        "empty-file",
        "one-column-for-both",
    ],
)
def test_bad_delimited_files_are_one_line(content, overrides, pattern, tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text(content)
    with pytest.raises(DataError, match=pattern) as caught:
        load_split(data("data=tsv", f"data.files={path}", *overrides), "train")
    assert "\n" not in str(caught.value)


def test_bad_format_settings_are_refused_at_start():
    with pytest.raises(ConfigError, match=r"data\.format='xml' is out of range"):
        compose([*TINY, "data.format=xml"])
    with pytest.raises(ConfigError, match=r"data\.format=tsv needs data\.files"):
        compose([*TINY, "data=tsv"])
    with pytest.raises(ConfigError, match=r"data\.split\.test=2\.5 is out of range"):
        compose([*TINY, "data.split.test=2.5"])


def test_a_named_column_that_is_not_in_the_header_lists_those_that_are(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("german,english\nHallo,Hello\n")
    with pytest.raises(
        DataError, match=r"has no column 'deutsch' for de \(data\.columns\.src\); it has columns german, english"
    ):
        load_split(
            data("data=csv", f"data.files={path}", "data.src=de", "data.tgt=en", "data.columns.src=deutsch"), "train"
        )


def test_a_pair_with_an_empty_side_is_filtered_and_counted(tmp_path):
    from seq2seq.data.corpora import filter_pairs

    path = tmp_path / "pairs.*.tsv"
    (tmp_path / "pairs.train.tsv").write_text("Go.\tVa !\nRun!\t\n\tCours !\nHi.\tSalut.\n")
    ds = load_split(data("data=tsv", f"data.files={path}"), "train")
    kept, report = filter_pairs(ds, compose(TINY).data.filter)
    assert ds.num_rows == 4 and kept["src"] == ["Go.", "Hi."] and report.empty == 2


def test_pairs_whose_source_is_their_target_are_counted(tmp_path):
    from seq2seq.data.corpora import filter_pairs

    path = tmp_path / "pairs.*.tsv"
    (tmp_path / "pairs.train.tsv").write_text("Go.\tGo.\nHi. \tHi.\nRun!\tCours !\n\t\n")
    _, report = filter_pairs(load_split(data("data=tsv", f"data.files={path}"), "train"), compose(TINY).data.filter)
    assert (report.total, report.identical, report.empty) == (4, 2, 1)  # an empty pair is not "identical"


@pytest.mark.slow
def test_a_corpus_whose_source_is_its_target_warns_once_in_train_log(tatoeba_lines, tmp_path):
    path = tmp_path / "eng-fra.tsv"  # the English copied into the French column: every pair is one sentence twice
    path.write_text("".join(f"{en}\t{en}\n" for en, _ in tatoeba_lines[:600]))
    split = ["data.src=en", "data.tgt=fr", "data.split.valid=40", "data.split.test=40"]
    out = tmp_path / "run"
    train(compose([*TINY, "data=tsv", f"data.files={path}", *split, "train.max_steps=1"]), out)
    warnings = [line for line in (out / "train.log").read_text().splitlines() if "identical" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        "WARNING tsv/en-fr train: 100% of the pairs (520 of 520) have a source identical to its "
        "target, and a model trained on them learns to copy; check data.src, data.tgt and data.columns "
        "(one column read for both?)"
    ), warnings


@pytest.mark.slow
def test_train_on_a_tsv_then_resume_on_the_same_split(tatoeba_lines, tmp_path):
    path = tmp_path / "eng-fra.tsv"
    path.write_text("".join(f"{en}\t{fr}\n" for en, fr in tatoeba_lines[:1500]))
    base = [
        *TINY,
        "data=tsv",
        f"data.files={path}",
        "data.src=en",
        "data.tgt=fr",
        "data.split.valid=40",
        "data.split.test=40",
    ]
    out = tmp_path / "run"
    assert train(compose([*base, "train.max_steps=10"]), out)["step"] == 10
    saved = load_checkpoint(out / "last.pt")
    assert saved["config"]["data"]["split"] == {
        "valid": 40.0,
        "test": 40.0,
        "seed": 1,
    }  # in config.json and the checkpoint
    assert json.loads((out / "config.json").read_text())["data"]["files"] == str(path)
    assert train(compose([*base, "train.max_steps=15", "train.resume=auto"]), out)["step"] == 15
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            *base,
            "data.split.seed=2",
            "train.max_steps=20",
            "train.resume=true",
            f"hydra.run.dir={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        done.returncode == 2 and "cannot change the model or data" in done.stderr and "data.split.seed" in done.stderr
    )
    assert done.stderr.count("\n") == 1 and load_checkpoint(out / "last.pt")["progress"]["step"] == 15
