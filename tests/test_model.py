"""The encoder-decoder: shapes, the bridge, and every fast path against the plain step loop."""

import pytest
import torch

from conftest import DEVICES
from seq2seq.config import AttentionConfig, ModelConfig
from seq2seq.data.vocab import BOS, PAD
from seq2seq.model import build_model
from seq2seq.model.lstm import Dropout, unpacked_lstm

V_SRC, V_TGT = 37, 29


def make(attention="bahdanau", score="concat", layers=1, input_feeding=True, tie=False, dropout=0.0):
    torch.manual_seed(0)
    cfg = ModelConfig(
        embedding_size=16,
        encoder_size=12,
        encoder_layers=layers,
        decoder_size=24,
        decoder_layers=layers,
        dropout=dropout,
        tie_embeddings=tie,
    )
    att = AttentionConfig(type=attention, score=score, size=10, input_feeding=input_feeding)
    return build_model(V_SRC, V_TGT, cfg, att).eval()


def batch():
    torch.manual_seed(1)
    src_lens = torch.tensor([7, 4, 2])
    src = torch.randint(4, V_SRC, (3, 7))
    src[torch.arange(7)[None, :] >= src_lens[:, None]] = PAD
    tgt_in = torch.randint(4, V_TGT, (3, 6))
    tgt_in[:, 0] = BOS
    return src, src_lens, tgt_in


def step_loop(model, src, src_lens, tgt_in):
    """The plain computation: one decoder step per target position, readout per step."""
    memory = model.encode(src, src_lens)
    state = model.decoder.init_state(memory)
    logits, weights = [], []
    for t in range(tgt_in.size(1)):
        out, state, w = model.decoder.step(tgt_in[:, t], state, memory)
        logits.append(model.generator(model.decoder.readout(out)))
        weights.append(w)
    attn = None if weights[0] is None else torch.stack(weights, 1)
    return torch.stack(logits, 1), attn


CASES = [
    ("none", None, True),
    ("bahdanau", "concat", True),
    ("bahdanau", "dot", True),
    ("luong", "general", True),
    ("luong", "general", False),
    ("luong", "dot", False),
    ("luong", "scaled_dot", False),
    ("luong", "concat", True),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention,score,feed", CASES)
def test_training_forward_matches_step_loop(attention, score, feed, layers, device):
    """The training forward (on ``device``) against the plain step loop on the CPU."""
    model = make(attention, score or "concat", layers, feed)
    src, src_lens, tgt_in = batch()
    ref_logits, ref_attn = step_loop(model, src, src_lens, tgt_in)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # float32 on a GPU too
        logits, attn = model.to(device)(src.to(device), src_lens, tgt_in.to(device))
    assert logits.device.type == device and logits.shape == (3, 6, V_TGT)
    torch.testing.assert_close(logits.cpu(), ref_logits, rtol=1e-5, atol=1e-5)
    if attention == "none":
        assert attn is None and ref_attn is None
    else:
        attn = attn.cpu()
        assert attn.shape == (3, 6, 7)
        torch.testing.assert_close(attn, ref_attn, rtol=1e-5, atol=1e-6)
        assert torch.all(attn[1, :, 4:] == 0) and torch.all(attn[2, :, 2:] == 0)


def test_rnn_step_matches_torch_lstm():
    model = make("luong", "general", layers=2, input_feeding=False)
    dec = model.decoder
    memory = model.encode(*batch()[:2])
    state = dec.init_state(memory)
    x = torch.randn(3, 1, 16)
    out, (h, c) = dec.rnn(x, (state.h, state.c))
    h2, c2 = dec.rnn_step(dec.input_gates(x[:, 0], memory), state, dec.prepare(memory))
    torch.testing.assert_close(h2, h)
    torch.testing.assert_close(c2, c)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
def test_step_matches_the_wiring_written_out(attention, layers):
    """One decoder step against its formula, with nn.LSTM on the concatenated input.

    The step itself takes shortcuts: the embedding's share of the gates comes in precomputed, the
    constant summary's share is computed once per batch, and the LSTM's input weight is split
    into the embedding's columns and the rest.
    """
    model = make(attention, "concat", layers, input_feeding=True)
    dec = model.decoder
    src, src_lens, tgt_in = batch()
    memory = model.encode(src, src_lens)
    plain = model.encoder(src, src_lens)  # the encoder's output, before Decoder.prepare
    state = dec.init_state(memory)
    if attention == "luong":
        state.feed = torch.randn(3, dec.feature_size)  # h~_{t-1} of some earlier step
    y = tgt_in[:, 1]
    out, new, weights = dec.step(y, state, memory)

    emb = dec.embedding(y)
    if attention == "none":
        x = torch.cat([emb, plain.summary], -1)  # s_t = LSTM([y_{t-1}; c], s_{t-1})
    elif attention == "bahdanau":
        context, want_weights = dec.attention(state.h[-1], plain.states, plain.states, plain.mask)  # attn(s_{t-1}, H)
        x = torch.cat([emb, context], -1)  # s_t = LSTM([y_{t-1}; c_t], s_{t-1})
    else:
        x = torch.cat([emb, state.feed], -1)  # s_t = LSTM([y_{t-1}; h~_{t-1}], s_{t-1})
    _, (h, c) = dec.rnn(x.unsqueeze(1), (state.h, state.c))
    torch.testing.assert_close(new.h, h)
    torch.testing.assert_close(new.c, c)
    if attention == "none":
        torch.testing.assert_close(out, torch.cat([h[-1], plain.summary, emb], -1))
    elif attention == "bahdanau":
        torch.testing.assert_close(weights, want_weights)
        torch.testing.assert_close(out, torch.cat([h[-1], context, emb], -1))
    else:
        context, want_weights = dec.attention(h[-1], plain.states, plain.states, plain.mask)  # attn(s_t, H)
        torch.testing.assert_close(weights, want_weights)
        torch.testing.assert_close(out, torch.tanh(dec.combine(torch.cat([context, h[-1]], -1))))  # h~_t


def test_encoder_ignores_padding():
    model = make("bahdanau")
    src, src_lens, _ = batch()
    memory = model.encode(src, src_lens)
    alone = model.encode(src[2:3, :2], src_lens[2:3])
    torch.testing.assert_close(memory.summary[2], alone.summary[0])
    torch.testing.assert_close(memory.states[2, :2], alone.states[0])
    assert torch.all(memory.states[2, 2:] == 0)
    assert memory.mask.tolist()[2] == [True, True, False, False, False, False, False]


@pytest.mark.parametrize("layers,bidirectional", [(1, True), (2, True), (2, False)])
def test_unpacked_encoder_matches_packed(layers, bidirectional):
    """The CPU encoder (one unpacked LSTM call per direction, the backward one on each sentence
    reversed within its length) against nn.LSTM over packed sequences: outputs, summary, gradients."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        embedding_size=16, encoder_size=12, encoder_layers=layers, bidirectional=bidirectional, dropout=0.0
    )
    encoder = build_model(V_SRC, V_TGT, cfg, AttentionConfig(type="bahdanau")).encoder.train()
    src, src_lens, _ = batch()
    emb = encoder.embedding(src)
    lens = src_lens
    mask = torch.arange(src.size(1))[None, :] < lens[:, None]
    results = []
    for run in (
        lambda: encoder._run_packed(emb, src_lens),
        lambda: unpacked_lstm(encoder.rnn, encoder.dropout, emb, lens, mask),
    ):
        encoder.zero_grad()
        states, summary = run()
        (states.pow(2).sum() + summary.sin().sum()).backward(retain_graph=True)
        results.append((states, summary, [p.grad.clone() for p in encoder.rnn.parameters()]))
    (states, summary, grads), (ref_states, ref_summary, ref_grads) = results[1], results[0]
    assert states.shape == (3, 7, encoder.output_size) and summary.shape == (3, encoder.output_size)
    torch.testing.assert_close(states, ref_states)
    torch.testing.assert_close(summary, ref_summary)
    assert torch.all(states[2, 2:] == 0)
    for grad, ref in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref)


def test_tied_embeddings_share_one_tensor():
    model = make("luong", "general", tie=True)
    assert model.generator.weight is model.decoder.embedding.weight


def test_teacher_forcing_below_one_trains_on_own_predictions():
    model = make("luong", "general", input_feeding=False)
    src, src_lens, tgt_in = batch()
    full, _ = model(src, src_lens, tgt_in, teacher_forcing=1.0)
    torch.manual_seed(3)
    free, _ = model(src, src_lens, tgt_in, teacher_forcing=0.0)
    assert free.shape == full.shape
    torch.testing.assert_close(free[:, 0], full[:, 0])  # the first input is BOS either way
    assert not torch.allclose(free, full)


def test_dropout_matches_nn_dropout_in_distribution():
    """The CPU dropout draws its mask differently from nn.Dropout; what it computes is the same,
    with p rounded to a multiple of 2^-16 and the scale following it (the expectation is exact)."""
    torch.manual_seed(0)
    drop = Dropout(0.3)
    kept_p = 1.0 - drop.threshold / 65536
    assert abs(kept_p - 0.7) <= 2**-17 and drop.scale == pytest.approx(1.0 / kept_p, rel=1e-12)
    x = torch.rand(400, 500) + 0.5  # no zeros of its own
    x.requires_grad_(True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # 200k draws: the standard error is 0.001
    torch.testing.assert_close(y[kept], x[kept] / kept_p)  # survivors scaled by 1 / (1 - p)
    torch.testing.assert_close(y.mean(), x.mean(), rtol=0.01, atol=0)  # unbiased: E[y] = x
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / kept_p)  # the gradient goes through the same mask
    assert not torch.equal(kept, drop(x) != 0)  # a fresh mask per call
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)
    for p in (0.1, 0.2, 0.5, 0.9):  # every cell of 16 bits is equally likely: the kept share is 1 - p
        share = (Dropout(p).mask((256, 1024), torch.float32) != 0).float().mean().item()
        assert abs(share - (1 - p)) < 0.005, p
