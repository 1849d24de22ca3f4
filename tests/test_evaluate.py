"""Evaluation: BLEU by length with bootstrap intervals, AER of attention, the eval report of a run."""

import gzip
import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import CORPORA
from seq2seq.alignment import (
    alignment_error_rate,
    count_links,
    diagonal_links,
    encode_words,
    merge_attention,
    parse_talp,
)
from seq2seq.evaluate import evaluate_run, length_buckets, main
from seq2seq.runs import find_latest_run

SPLITS = ("test_2016_flickr", "test_2017_flickr")
RANGES = ["1-10", "11-20", "21-30", "31-40", "41-50", "51+"]


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster


# -- alignment -------------------------------------------------------------------------------


def test_aer_counts_by_hand():
    sure, possible = parse_talp("1-1 2p2 2-3\n")
    assert sure == {(1, 1), (2, 3)} and possible == {(1, 1), (2, 2), (2, 3)}
    scores = count_links({(1, 1), (2, 2), (3, 3)}, sure, possible).scores()
    # |A n S| = 1, |A n P| = 2, |A| = 3, |S| = 2
    assert scores == pytest.approx({"aer": 1 - 3 / 5, "precision": 2 / 3, "recall": 1 / 2})


def test_merge_sums_source_pieces_and_averages_target_pieces():
    attention = torch.tensor(
        [
            [0.6, 0.1, 0.1, 0.2],  # target word 0
            [0.1, 0.3, 0.3, 0.3],  # target word 1, piece 1
            [0.5, 0.1, 0.1, 0.3],  # target word 1, piece 2
        ]
    )  # (T=3 pieces, S=4 pieces): source words [0, 1, 1, 2]
    merged = merge_attention(attention, [0, 1, 1], [0, 1, 1, 2])
    expected = torch.tensor([[0.6, 0.2, 0.2], [0.3, 0.4, 0.3]])
    torch.testing.assert_close(merged, expected)


PIECES = {"das": [4], "Haus": [5, 6], "ist": [7], "the": [4], "house": [5, 6], "is": [7]}


class StubVocab:
    """Words to fixed piece ids: 'Haus' and 'house' are two pieces each."""

    def encode_src(self, words):
        return [PIECES[w] for w in words]

    encode_tgt = encode_src


class StubModel(nn.Module):
    """Returns a hand-written attention ``(1, T, S)`` whatever it reads."""

    has_attention = True
    heads = 1  # one head: what the code reads (Seq2Seq.heads)

    def __init__(self, attention):
        super().__init__()
        self.attention = attention
        self.decoder = SimpleNamespace(attention=SimpleNamespace(heads=1))
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, src, src_lens, tgt_in):
        assert src.tolist() == [[4, 5, 6, 7, 3]] and tgt_in.tolist() == [[2, 4, 5, 6, 7]]
        return None, self.attention.unsqueeze(0)


def test_alignment_error_rate_on_a_hand_made_sentence():
    # Columns: das, Ha-, -us, ist, </s>. Rows: the, hou-, -se, is, </s>.
    attention = torch.tensor(
        [
            [0.70, 0.10, 0.10, 0.05, 0.05],  # the -> das
            [0.10, 0.30, 0.30, 0.20, 0.10],  # house (mean of two rows): das .3, Haus .4, ist .2 -> Haus
            [0.50, 0.10, 0.10, 0.20, 0.10],  #   (this row alone would pick das)
            [0.10, 0.20, 0.20, 0.35, 0.15],  # is: Haus .4 (sum of two pieces) beats ist .35 -> Haus
            [0.20, 0.20, 0.20, 0.20, 0.20],  # the EOS row is ignored
        ]
    )
    result = alignment_error_rate(
        StubModel(attention), StubVocab(), [["das", "Haus", "ist"]], [["the", "house", "is"]], ["1-1 2-2 3p3"]
    )
    # A = {1-1, 2-2, 2-3}; S = {1-1, 2-2}; P = S + {3-3}: |A n S| = |A n P| = 2, |A| = 3, |S| = 2
    assert result == pytest.approx({"aer": 1 - 4 / 5, "precision": 2 / 3, "recall": 1.0, "n_sentences": 1})


def test_word_encoding_matches_the_sentence_segmentation(trained_run):
    from seq2seq.translator import Translator

    vocab = Translator.from_checkpoint(trained_run / "best.pt").vocab
    words = "Wir glauben nicht , daß wir nur Rosinen herauspicken sollten .".split()
    ids, word_of = encode_words(vocab.encode_src, words)
    assert ids == vocab.encode_src([" ".join(words)])[0]
    assert word_of[0] == 0 and word_of[-1] == len(words) - 1 and word_of == sorted(word_of)


# -- BLEU by length --------------------------------------------------------------------------


def test_length_buckets_count_words_and_bootstrap():
    src = ["a b c", " ".join(["w"] * 15), " ".join(["w"] * 60), "x y"]
    refs = ["the cat sat on the mat", "a dog runs in the park", "two men play chess outside", "it rains"]
    hyps = list(refs)
    hyps[3] = "it snows"
    buckets = length_buckets(src, hyps, refs, bootstrap=200, rng=np.random.default_rng(0))
    assert [b["range"] for b in buckets] == RANGES
    assert [b["n"] for b in buckets] == [2, 1, 0, 0, 0, 1]
    assert buckets[2] == {"range": "21-30", "n": 0, "bleu": None, "ci95": None, "length_ratio": None}
    assert buckets[1]["length_ratio"] == pytest.approx(1.0) and buckets[5]["length_ratio"] == pytest.approx(1.0)
    assert buckets[1]["bleu"] == pytest.approx(100.0) and buckets[1]["ci95"] == pytest.approx([100.0, 100.0])
    low, high = buckets[0]["ci95"]
    assert 0.0 <= low <= buckets[0]["bleu"] <= high <= 100.0 + 1e-9 and low < high


# -- a run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory):
    """The trained run's best.pt in a directory of its own, so evaluation files stay here."""
    run = tmp_path_factory.mktemp("evalrun") / "bahdanau"
    run.mkdir()
    shutil.copy(trained_run / "best.pt", run / "best.pt")
    return run


@pytest.fixture(scope="module")
def greedy_report(run_copy):
    torch.set_num_threads(1)
    return evaluate_run(run_copy, n_heatmaps=2, bootstrap=100)


def test_greedy_report_has_every_key(run_copy, greedy_report):
    out = run_copy / "eval" / "greedy"
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"] == str(run_copy / "best.pt") and "alignment" not in report
    assert sorted(report["splits"]) == sorted(SPLITS)
    for split in SPLITS:
        r = report["splits"][split]
        assert {"bleu", "bleu_signature", "chrf", "chrf_signature", "n_sentences", "decode", "buckets"} <= r.keys()
        assert r["n_sentences"] == 40 and r["decode"]["mode"] == "greedy" and r["decode"]["sent_per_s"] > 0
        assert r["bleu_signature"].startswith("nrefs:1") and "nc:6" in r["chrf_signature"]
        assert [b["range"] for b in r["buckets"]] == RANGES and sum(b["n"] for b in r["buckets"]) == 40
        for b in r["buckets"]:
            assert {"range", "n", "bleu", "ci95", "length_ratio"} == b.keys()
            assert (b["bleu"] is None) == (b["n"] == 0) and (b["ci95"] is None) == (b["n"] == 0)
            if b["n"]:
                assert b["ci95"][0] <= b["ci95"][1]
        hyps = (out / f"{split}.hyp.txt").read_text().split("\n")
        assert len(hyps) == 41 and hyps[-1] == ""
        assert sorted(p.name for p in out.glob(f"attention_{split}_*.png")) == [
            f"attention_{split}_0.png",
            f"attention_{split}_1.png",
        ]
    assert (out / "length.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        "| 51+ | 0 | - | - | - |" in (out / "report.md").read_text()
        and "BLEU signature" in (out / "report.md").read_text()
    )


def test_greedy_results_go_to_tensorboard(run_copy, greedy_report):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_copy), size_guidance={"images": 0}).Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    assert {
        "test/test_2016_flickr/bleu",
        "test/test_2017_flickr/chrf",
        "test/test_2016_flickr/bleu_len_1-10",
    } <= scalars
    assert "test/length" in images and "test/attention/test_2016_flickr/0" in images


def test_beam_run_leaves_greedy_alone(run_copy, greedy_report):
    greedy = run_copy / "eval" / "greedy"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in greedy.iterdir()}
    report = evaluate_run(run_copy, beam=5, length_penalty=0.6, n_heatmaps=1, bootstrap=50)
    beam = run_copy / "eval" / "beam5"
    assert report["mode"] == "beam5" and report["splits"]["test_2016_flickr"]["decode"]["mode"] == "beam5"
    assert {"report.json", "report.md", "length.png", "test_2017_flickr.hyp.txt"} <= {p.name for p in beam.iterdir()}
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in greedy.iterdir()} == before


def test_alignment_entry_when_gold_alignments_exist(run_copy, trained_run, tmp_path):
    from seq2seq.training.checkpoint import load_checkpoint

    root = tmp_path / "corpora"
    (root / "alignments-de-en").mkdir(parents=True)
    os.symlink(load_checkpoint(trained_run / "best.pt")["config"]["data"]["root"] + "/multi30k", root / "multi30k")
    for name in ("test.de.gz", "test.en.gz", "deen.talp.gz"):
        with gzip.open(CORPORA / "alignments-de-en" / name, "rt", encoding="utf-8") as src:
            lines = [next(src) for _ in range(12)]
        with gzip.open(root / "alignments-de-en" / name, "wt", encoding="utf-8") as dst:
            dst.writelines(lines)
    report = evaluate_run(run_copy, n_heatmaps=0, bootstrap=10, data_root=root)
    alignment = report["alignment"]
    assert alignment["n_sentences"] == 12 and 0.0 <= alignment["aer"] <= 1.0
    assert 0.0 <= alignment["precision"] <= 1.0 and 0.0 <= alignment["recall"] <= 1.0
    assert 0.0 <= alignment["diagonal"]["aer"] <= 1.0
    report_md = (run_copy / "eval" / "greedy" / "report.md").read_text()
    assert "AER" in report_md and "diagonal baseline" in report_md


def test_diagonal_baseline_links_each_target_word_to_the_same_relative_source_position():
    assert diagonal_links(3, 3) == {(1, 1), (2, 2), (3, 3)}
    assert diagonal_links(2, 4) == {(1, 1), (1, 2), (2, 3), (2, 4)}
    assert diagonal_links(4, 2) == {(2, 1), (4, 2)}
    assert diagonal_links(1, 3) == {(1, 1), (1, 2), (1, 3)}


# -- the command -----------------------------------------------------------------------------


def test_latest_run_is_the_newest_best_pt(tmp_path):
    for i, name in enumerate(["a/x", "b/multirun/0", "c"]):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "best.pt").write_bytes(b"")
        os.utime(tmp_path / name / "best.pt", (1000 + i * (-1 if name == "c" else 1),) * 2)
    assert find_latest_run(tmp_path) == tmp_path / "b/multirun/0"


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("no run with a best.pt under outputs/; train one first or pass --run DIR")
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"junk")
    assert main(["--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "error: checkpoint" in err and "damaged" in err and "Traceback" not in err


def test_summed_sentence_statistics_give_sacrebleus_corpus_bleu():
    """The bootstrap intervals rebuild corpus BLEU from per-sentence statistics: it must be sacreBLEU's own."""
    from sacrebleu.metrics import BLEU

    from seq2seq.metrics import bleu_from_statistics, bleu_interval, sentence_statistics

    refs = ["a dog runs on the grass .", "two men are talking .", "a woman sings", "the cat sleeps on a red sofa ."]
    hyps = ["a dog runs in the grass .", "two men talk .", "a woman is singing", "a cat sleeps on the sofa ."]
    stats = sentence_statistics(hyps, refs)
    assert stats.shape == (4, 10)
    assert bleu_from_statistics(stats.sum(0)) == pytest.approx(BLEU().corpus_score(hyps, [refs]).score, abs=1e-9)
    low, high = bleu_interval(hyps, refs, 200, __import__("numpy").random.default_rng(0))
    assert 0.0 <= low <= BLEU().corpus_score(hyps, [refs]).score <= high <= 100.0


def test_the_command_prints_the_report_and_where_the_explorer_page_went(run_copy, greedy_report, capsys):
    assert main(["--run", str(run_copy), "--n-heatmaps", "0", "--bootstrap", "10"]) == 0
    out = capsys.readouterr().out
    page = run_copy / "eval" / "greedy" / "explorer.html"
    assert out.startswith("# Evaluation of") and out.rstrip().splitlines()[-1].endswith(f"the explorer page {page}")
    assert page.is_file()
