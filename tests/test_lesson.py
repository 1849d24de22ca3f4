"""The step panel's numbers: a decoder replayed over its own output gives the weights decoding gave,
the raw scores are the model's own score function, and softmax(scores) = weights."""

import math

import pytest
import torch

from seq2seq.config import AttentionConfig, ModelConfig
from seq2seq.lesson import FORMULAS, Steps, attention_steps, one_step, panel_lines
from seq2seq.model import build_model
from seq2seq.model.attention import build_attention
from seq2seq.search import Search, decode_corpus
from seq2seq.translator import Translator, explorer_records

pytestmark = pytest.mark.usefixtures("one_thread")

WIRINGS = [
    ("bahdanau", "concat", True),
    ("bahdanau", "dot", True),
    ("luong", "general", True),
    ("luong", "scaled_dot", True),
    ("luong", "dot", False),  # the fast path's decoder, stepped
]
SOURCES = [[5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16, 17], [20], [21, 22]]


def small_model(wiring, score, feed, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(embedding_size=16, encoder_size=16, decoder_size=32)
    return build_model(40, 50, cfg, AttentionConfig(type=wiring, score=score, input_feeding=feed, size=16)).eval()


def taken(hyp):
    return (hyp.tokens + [3])[: hyp.attention.size(0)]  # the ids, then EOS where it ended with one


@pytest.mark.parametrize(("wiring", "score", "feed"), WIRINGS)
@pytest.mark.parametrize("beam", [1, 3])
def test_replaying_the_output_gives_the_weights_decoding_gave(wiring, score, feed, beam):
    model = small_model(wiring, score, feed)
    hyps = decode_corpus(model, SOURCES, torch.device("cpu"), Search(beam=beam, max_ratio=1.5, return_attention=True))
    steps = attention_steps(model, SOURCES, [taken(h) for h in hyps], batch_size=3)  # two batches
    for src, hyp, st in zip(SOURCES, hyps, steps):
        assert st.weights.shape == hyp.attention.shape == (hyp.attention.size(0), len(src) + 1)
        torch.testing.assert_close(st.weights, hyp.attention, rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.softmax(st.scores, -1), st.weights, rtol=0, atol=1e-6)
        assert st.value_norm.shape == (len(src) + 1,) and (st.value_norm > 0).all()
        assert st.query_norm.shape == st.context_norm.shape == (hyp.attention.size(0),)


def test_a_model_without_attention_has_no_steps():
    torch.manual_seed(0)
    model = build_model(
        40, 50, ModelConfig(embedding_size=16, encoder_size=16, decoder_size=32), AttentionConfig(type="none")
    )
    assert attention_steps(model, SOURCES, [[3]] * len(SOURCES)) == [None] * len(SOURCES)


def test_stored_scores_are_the_additive_score_recomputed_from_the_checkpoint(trained_run):
    """v . tanh(W_q s_{t-1} + W_k h_j) written out with the checkpoint's own weights, step by step."""
    translator = Translator.from_checkpoint(trained_run / "best.pt", precision="fp32")
    sentence = "Zwei Hunde spielen im Schnee."
    hyp = translator.nbest([sentence], return_attention=True)[0][0]
    rec = explorer_records(translator, [sentence], [hyp], [None])[0]
    model, attn = translator.model, translator.model.decoder.attention
    src_ids = translator.vocab.encode_src([sentence])[0] + [3]
    with torch.no_grad():
        memory = model.encode(torch.tensor([src_ids]), torch.tensor([len(src_ids)]))
        state = model.decoder.init_state(memory)
        y = torch.tensor([2])  # BOS
        for t, row in enumerate(rec.scored):
            q = state.h[-1][0]  # Bahdanau's query: the previous decoder state s_{t-1}
            H = memory.states[0]  # (S, K): the keys (and values)
            by_hand = (
                attn.energy_layer.weight[0]
                @ torch.tanh(attn.query_layer.weight @ q + (attn.key_layer.weight @ H.T).T).T
            )  # (S,)
            m = float(by_hand.max())
            assert rec.top_score[t] == pytest.approx(m, abs=6e-4)
            assert rec.normaliser[t] == pytest.approx(float((by_hand - m).exp().sum()), abs=1e-3)
            weights = torch.softmax(by_hand, -1)
            stored = dict(zip(row[::2], row[1::2]))
            assert {j for j in range(len(weights)) if weights[j] >= 0.02} <= set(stored)  # every weight of 2 % or more
            for j, d in stored.items():
                assert rec.top_score[t] - d / 1000 == pytest.approx(float(by_hand[j]), abs=1.1e-3)  # the raw score
                # what a reader checks by hand on screen: exp(s_j - m) / Z is the weight
                assert abs(math.exp(-d / 1000) / rec.normaliser[t] - float(weights[j])) <= 1e-3
            _, state, _ = model.decoder.step(y, state, memory)
            y = torch.tensor([(hyp.tokens + [3])[t]])
    assert len(rec.scored) == len(rec.out_pieces) == len(rec.context_norm) == len(rec.top_score)
    assert len(rec.value_norm) == len(rec.src_pieces) and rec.attention is None


@pytest.mark.parametrize("score", list(FORMULAS))
def test_the_lesson_call_and_its_panel(score):
    torch.manual_seed(1)
    query, keys = torch.randn(2, 8), torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, -1] = False
    attention = build_attention(score, 8, 8, size=8)
    with torch.no_grad():
        context, weights = attention(query, keys, keys, mask)
    steps = one_step(attention, query, keys, keys, mask)
    torch.testing.assert_close(steps[0].weights[0], weights[0])
    torch.testing.assert_close(steps[1].weights[0], weights[1, :4])  # padding is not a position
    torch.testing.assert_close(steps[1].context_norm[0], context[1].norm())
    lines = panel_lines(score, [f"k{i}" for i in range(5)], steps[0], 0)
    assert FORMULAS[score] in "\n".join(lines)
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert len(rows) == 5
    z = float(lines[3].rsplit("=", 1)[1])
    for row in rows:  # exp(s_i - m) / Z = w_i, as printed
        assert float(row[3]) / z == pytest.approx(float(row[4]), abs=2e-4)


def test_the_panel_prints_no_inequality_its_numbers_contradict():
    """A peaked step: ‖c‖ and Σ w_i·‖v_i‖ agree to float32 error, which may tip the printed digits."""
    weights = torch.tensor([[1.0, 0.0]])
    steps = Steps(weights.log(), weights, torch.ones(1), torch.tensor([2.0006]), torch.tensor([2.0, 1.0]))
    line = panel_lines("dot", ["k0", "k1"], steps, 0)[-1]
    assert "‖c‖ = 2.001 ≈ Σ_i w_i·‖v_i‖ = 2.000" in line and "≤" not in line
    steps.context_norm = torch.tensor([1.5])
    assert "‖c‖ = 1.500 ≤ Σ_i w_i·‖v_i‖ = 2.000" in panel_lines("dot", ["k0", "k1"], steps, 0)[-1]
