"""Multi-head attention (``attention.heads``): the formulas written out, one head as before, the loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from seq2seq.config import AttentionConfig, Config, ModelConfig
from seq2seq.data.vocab import BOS, PAD
from seq2seq.errors import ConfigError
from seq2seq.model import build_model, recurrence
from seq2seq.model.attention import ConcatScore, GeneralScore, ScaledDotScore, build_attention

B, S, T, D, N = 3, 5, 4, 8, 4  # batch, source, steps, query/key size, heads
SCORES = ["dot", "scaled_dot", "general", "concat"]


def tensors():
    torch.manual_seed(0)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 3:] = False  # the second sentence has 3 real positions, the third 1
    mask[2, 1:] = False
    return torch.randn(B, T, D), torch.randn(B, S, D), mask


def reference(attn, query, keys, mask):
    """Multi-head attention by loops over heads, batch and steps: the module docstring's equations."""
    h, heads = D // N, attn.heads
    values = keys @ attn.value_layer.weight.t()  # W_V k_j
    context = torch.zeros(B, T, D)
    weights = torch.zeros(B, heads, T, S)
    for b in range(B):
        for t in range(T):
            q = query[b, t]
            for n in range(heads):
                part = slice(n * h, (n + 1) * h)
                scores = []
                for j in range(S):
                    k = keys[b, j]
                    if isinstance(attn, ConcatScore):
                        a = attn.key_layer.weight.size(0) // heads
                        ap = slice(n * a, (n + 1) * a)
                        e = torch.tanh(attn.query_layer.weight[ap] @ q + attn.key_layer.weight[ap] @ k)
                        scores.append(attn.energy_layer.weight[0, ap] @ e)
                    elif isinstance(attn, GeneralScore):
                        scores.append(q[part] @ (attn.key_layer.weight[part] @ k))  # W_n: rows n of W
                    else:
                        s = q[part] @ k[part]
                        scores.append(s / math.sqrt(h) if isinstance(attn, ScaledDotScore) else s)
                real = [j for j in range(S) if mask[b, j]]
                top = max(float(scores[j]) for j in real)
                z = sum(math.exp(float(scores[j]) - top) for j in real)
                for j in real:
                    weights[b, n, t, j] = math.exp(float(scores[j]) - top) / z
                context[b, t, part] = sum(weights[b, n, t, j] * values[b, j, part] for j in real)
            context[b, t] = attn.output_layer.weight @ context[b, t]  # W_O [head_1; ...; head_N]
    return context, weights


@pytest.mark.parametrize("score", SCORES)
def test_multi_head_against_the_equations_written_out(score):
    torch.manual_seed(1)
    attn = build_attention(score, D, D, size=12, heads=N)
    query, keys, mask = tensors()
    with torch.no_grad():
        context, weights = attn(query, keys, keys, mask)
        want_context, want_heads = reference(attn, query, keys, mask)
        heads = attn.head_weights(query, keys, mask)
    torch.testing.assert_close(heads, want_heads, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights, want_heads.mean(1), rtol=1e-5, atol=1e-6)  # the mean over heads
    torch.testing.assert_close(context, want_context, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(heads[:, 0], heads[:, 1])  # the heads attend differently


@pytest.mark.parametrize("score", SCORES)
def test_each_head_is_a_distribution_that_gives_padding_exactly_zero(score):
    attn = build_attention(score, D, D, size=12, heads=N)
    query, keys, mask = tensors()
    with torch.no_grad():
        heads = attn.head_weights(query, keys, mask)  # (B, N, T, S)
        _, weights = attn(query[:, 0], keys, keys, mask)  # one step, (B, S)
    torch.testing.assert_close(heads.sum(-1), torch.ones(B, N, T))
    assert (heads.masked_select(~mask[:, None, None, :]) == 0).all()
    assert (weights[~mask] == 0).all() and torch.allclose(weights.sum(-1), torch.ones(B))


ONE_HEAD_PARAMETERS = {
    "dot": set(),
    "scaled_dot": set(),
    "general": {"key_layer.weight"},
    "concat": {"key_layer.weight", "query_layer.weight", "energy_layer.weight"},
}


@pytest.mark.parametrize("score", SCORES)
def test_one_head_is_the_lessons_attention_with_the_same_parameters(score):
    """heads=1 is the one-head module exactly: its parameters, and the lesson's formula bit for bit."""
    torch.manual_seed(2)
    attn = build_attention(score, D, D, size=12, heads=1)
    assert set(dict(attn.named_parameters())) == ONE_HEAD_PARAMETERS[score]
    query, keys, mask = tensors()
    with torch.no_grad():
        context, weights = attn(query, keys, keys, mask)
        if score == "concat":
            e = torch.tanh(attn.query_layer(query).unsqueeze(2) + attn.key_layer(keys).unsqueeze(1))
            scores = attn.energy_layer(e).squeeze(-1)
        else:
            k = attn.key_layer(keys) if score == "general" else keys
            scores = torch.bmm(query, k.transpose(1, 2)) * (1 / math.sqrt(D) if score == "scaled_dot" else 1.0)
        want = F.softmax(scores.masked_fill(~mask[:, None], float("-inf")), -1)
    assert torch.equal(weights, want)
    assert torch.equal(context, torch.bmm(want, keys))
    assert torch.equal(attn.head_weights(query, keys, mask)[:, 0], want)


def test_heads_add_the_value_and_output_projections_only():
    one, four = build_attention("concat", D, D, 12, 1), build_attention("concat", D, D, 12, 4)
    extra = set(dict(four.named_parameters())) - set(dict(one.named_parameters()))
    assert extra == {"value_layer.weight", "output_layer.weight"}
    assert four.energy_layer.weight.shape == one.energy_layer.weight.shape  # v_n are slices of one v


def make(attention, score, heads, input_feeding=True, layers=1):
    torch.manual_seed(0)
    cfg = ModelConfig(embedding_size=16, encoder_size=12, decoder_size=24, dropout=0.0, decoder_layers=layers)
    att = AttentionConfig(type=attention, score=score, size=12, input_feeding=input_feeding, heads=heads)
    return build_model(30, 40, cfg, att)


def batch():
    torch.manual_seed(1)
    src_lens = torch.tensor([7, 4, 2])
    src = torch.randint(4, 30, (3, 7))
    src[torch.arange(7)[None, :] >= src_lens[:, None]] = PAD
    tgt_in = torch.randint(4, 40, (3, 6))
    tgt_in[:, 0] = BOS
    return src, src_lens, tgt_in


CASES = [
    ("bahdanau", "concat", True),
    ("bahdanau", "general", True),
    ("luong", "general", True),
    ("luong", "general", False),  # the fast path: one LSTM call, attention of all steps in one product
    ("luong", "dot", False),
    ("luong", "scaled_dot", True),
]


@pytest.mark.parametrize("attention,score,feed", CASES)
def test_with_heads_the_training_forward_equals_decoding_step_by_step(attention, score, feed, monkeypatch):
    """Training's forward (the fast path where it applies) against decoding's steps, and the fused
    float32 loops decline heads: the step loop serves, gradients flowing into every head's weights."""
    model = make(attention, score, N if score != "concat" else 4, feed)
    fused = []
    monkeypatch.setattr(recurrence._BahdanauLoop, "apply", lambda *a: fused.append(1))
    monkeypatch.setattr(recurrence._LuongFeedLoop, "apply", lambda *a: fused.append(1))
    src, src_lens, tgt_in = batch()
    logits, attn = model(src, src_lens, tgt_in)
    assert not fused  # float32 on a CPU, one layer: one head would have taken the fused loop
    memory = model.encode(src, src_lens)
    state, steps = model.decoder.init_state(memory), []
    for t in range(tgt_in.size(1)):
        out, state, w = model.decoder.step(tgt_in[:, t], state, memory)
        steps.append((model.generator(model.decoder.readout(out)), w))
    torch.testing.assert_close(logits, torch.stack([s[0] for s in steps], 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn, torch.stack([s[1] for s in steps], 1), rtol=1e-5, atol=1e-6)
    logits.logsumexp(-1).sum().backward()
    for name in ("value_layer", "output_layer"):
        grad = getattr(model.decoder.attention, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_the_fused_loops_refuse_heads_where_called_directly():
    model = make("bahdanau", "concat", 4)
    with pytest.raises(TypeError, match="4 attention heads"):
        recurrence.Score.of(model.decoder.attention)
    memory = model.encode(*batch()[:2])
    assert recurrence.fused_loop_applies(memory) and not recurrence.fused_loop_applies(memory, model.decoder.attention)


def config(**attention):
    return {"model": {"encoder_size": 192, "decoder_size": 384}, "attention": attention}


@pytest.mark.parametrize(
    "attention,message",
    [
        (
            {"type": "bahdanau", "score": "concat", "size": 256, "heads": 5},
            "attention.heads=5 does not divide attention.size=256 and the encoder output size 384 (keys and "
            "values); the nearest valid head counts are 4 and 8",
        ),
        (
            {"type": "luong", "score": "general", "heads": 7},
            "attention.heads=7 does not divide the query size 384 (model.decoder_size) and the encoder output "
            "size 384 (keys and values); the nearest valid head counts are 6 and 8",
        ),
        ({"type": "none", "heads": 4}, "attention.heads=4 with attention=none: the baseline has no attention"),
        ({"type": "luong", "heads": 0}, "attention.heads=0 is out of range: expected at least 1"),
    ],
)
def test_bad_head_counts_are_one_line(attention, message):
    with pytest.raises(ConfigError) as error:
        Config.from_dict(config(**attention))
    assert str(error.value) == message


def test_valid_head_counts_pass():
    for heads in (1, 2, 4, 8, 16):
        Config.from_dict(config(type="bahdanau", score="concat", heads=heads))


def test_a_checkpoint_from_before_heads_loads_and_translates_as_before(trained_run, tmp_path):
    """A one-head checkpoint written before ``attention.heads`` existed (no such key in its config)."""
    from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
    from seq2seq.translator import Translator

    payload = load_checkpoint(trained_run / "best.pt")
    del payload["config"]["attention"]["heads"]
    payload.pop("format_version", None)
    save_checkpoint(payload, tmp_path / "old.pt")
    sentences = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    old = Translator.from_checkpoint(tmp_path / "old.pt", precision="fp32")
    new = Translator.from_checkpoint(trained_run / "best.pt", precision="fp32")
    assert old.config.attention.heads == 1
    assert old.translate(sentences) == new.translate(sentences)


@pytest.mark.slow
def test_a_short_multi_head_run_shows_every_head(corpus_root, tmp_path):
    """TensorBoard: each head's heatmaps and statistics; the history and the pages: each head's rows."""
    from conftest import CORPORA, TINY, compose, events
    from seq2seq.alignment import alignment_error_rate, read_gold
    from seq2seq.explorer import read_page_data, run_page, weights_of
    from seq2seq.history import read
    from seq2seq.training import train
    from seq2seq.translator import Translator

    heads = 4
    overrides = [*TINY, "attention=bahdanau", f"attention.heads={heads}", f"data.root={corpus_root}"]
    train(compose([*overrides, "train.max_steps=40"]), tmp_path)
    tags = events(tmp_path).Tags()
    assert {"attention_heads/0", "attention_heads/1", "attention/0"} <= set(tags["images"])
    for h in range(1, heads + 1):
        assert {f"valid/attention_entropy/head_{h}", f"valid/attention_diagonal/head_{h}"} <= set(tags["scalars"])

    entries, _ = read(tmp_path)
    assert [e["step"] for e in entries] == [20, 40]
    sentence = entries[-1]["sentences"][0]
    assert len(sentence["heads"]) == heads and all(len(h) == len(sentence["op"]) for h in sentence["heads"])

    page = read_page_data(run_page(tmp_path))
    assert page["models"][0]["attention"]["heads"] == heads and "4 heads" in page["models"][0]["name"]
    assert len(page["sentences"][0]["out"][0]["heads"]) == heads

    translator = Translator.from_checkpoint(tmp_path / "best.pt", precision="fp32")
    sentences = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    out = read_page_data(translator.write_page(tmp_path / "page.html", sentences))["sentences"][1]["out"][0]
    assert out["op"] and len(out["heads"]) == heads
    per_head = [weights_of(h) for h in out["heads"]]  # each head from its own stored scores
    for t, row in enumerate(weights_of(out)):  # the mean the page stores, against the heads' mean
        for j in set(row) | {j for h in per_head for j in h[t]}:
            mean = sum(h[t].get(j, 0.0) for h in per_head) / heads
            assert abs(row.get(j, 0.0) - mean) < 0.025  # stored rows drop weights under 2 % / 2 per mille

    src, tgt, gold = read_gold(CORPORA / "alignments-de-en", "de", "en")
    result = alignment_error_rate(translator.model, translator.vocab, src[:20], tgt[:20], gold[:20])
    assert len(result["heads"]) == heads and 1 <= result["best_head"] <= heads
    assert result["heads"][result["best_head"] - 1]["aer"] == min(h["aer"] for h in result["heads"])
