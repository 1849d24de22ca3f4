"""``make bench``'s comparison with ``make peers``: which figure is divided by which."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_peers  # noqa: E402

PEERS = {
    "train": {
        "additive": {"tgt_tok_per_s": 4000.0},
        "general": {"tgt_tok_per_s": 5000.0},
        "transformer": {"tgt_tok_per_s": 3000.0},
    },
    "decode": {
        "greedy": {"sent_per_s": 500.0},
        "beam5": {"sent_per_s": 200.0},
        "transformer_greedy": {"sent_per_s": 100.0},
    },
}


def report(bf16: bool) -> dict:
    half = (lambda x: 2 * x) if bf16 else (lambda x: None)
    train = {
        name: {"tgt_tok_per_s": tok, "tgt_tok_per_s_bf16": half(tok)}
        for name, tok in [
            ("bahdanau", 6000.0),
            ("luong_input_feed", 5500.0),
            ("luong", 7500.0),
            ("none", 9000.0),
            ("transformer", 3600.0),
        ]
    }
    decode = {"greedy_sent_per_s": 1000.0, "greedy_sent_per_s_bf16": half(1000.0), "beam5_sent_per_s": 300.0}
    decode["beam5_sent_per_s_bf16"] = half(300.0)
    transformer = {"greedy_sent_per_s": 250.0, "greedy_sent_per_s_bf16": half(250.0)}
    return {"train": train, "decode": decode, "decode_transformer": transformer}


@pytest.mark.parametrize("bf16", [True, False])
def test_bench_divides_each_of_our_figures_by_its_opennmt_counterpart(bf16):
    ratios = bench_peers.peer_ratios(report(bf16), PEERS)
    expected = {
        "bahdanau / additive, tgt tok/s": (4000, 1.5),
        "luong input feeding / general": (5000, 1.1),
        "luong fast path / general": (5000, 1.5),
        "greedy test2016, sent/s": (500, 2.0),
        "beam 5 test2016, sent/s": (200, 1.5),
        "transformer, tgt tok/s": (3000, 1.2),
        "transformer greedy, sent/s": (100, 2.5),
    }
    assert set(ratios) == set(expected)
    for name, (peer, fp32) in expected.items():
        assert ratios[name]["opennmt_fp32"] == peer
        assert ratios[name]["fp32"] == pytest.approx(fp32)
        # bf16 against OpenNMT-py's float32, or None where this CPU has no bf16
        assert ratios[name]["bf16"] == (pytest.approx(2 * fp32) if bf16 else None)


def test_bench_skips_a_comparison_the_peers_file_lacks():
    peers = {"train": PEERS["train"]}  # an interrupted make peers: no decoding figures
    assert set(bench_peers.peer_ratios(report(True), peers)) == {
        "bahdanau / additive, tgt tok/s",
        "luong input feeding / general",
        "luong fast path / general",
        "transformer, tgt tok/s",
    }


def test_the_loop_ab_alternates_the_sides_and_reads_the_logged_rates():
    import ab_train

    assert [ab_train.order(k) for k in range(3)] == [("A", "B"), ("B", "A"), ("A", "B")]
    log = "\n".join(
        f"12:00:0{i} step {50 * (i + 1)}/400 | epoch 1 | loss 4.0 ppl 50.0 | lr 1.0e-03 | {rate} tok/s | 0:0{i} elapsed"
        for i, rate in enumerate(["1,000", "5,000", "7,100", "7,300", "6,900"])
    )
    assert ab_train.window_rates(log) == [1000, 5000, 7100, 7300, 6900]
    assert ab_train.loop_figure(log) == 7100  # the first two windows (warm-up) left out
    with pytest.raises(SystemExit, match="give more --loop-steps"):
        ab_train.loop_figure(log.splitlines()[0])
