"""The fused teacher-forced loops (seq2seq.model.recurrence) against the step loop under autograd.

Outputs, attention weights and the gradient of every parameter must match the step loop that
:meth:`Decoder.forward` runs when the fused loop is switched off, for every score function and
wiring that has a fused loop, on a batch with padding on both sides. Where the fused loop does
not apply (bf16 autocast, two decoder layers) the decoder must take the step loop.
"""

import pytest
import torch

from seq2seq.config import AttentionConfig, ModelConfig
from seq2seq.data.vocab import BOS, PAD
from seq2seq.model import build_model, recurrence
from seq2seq.model.lstm import Dropout

V_SRC, V_TGT = 41, 33


def make(attention, score, layers=1, dropout=0.0, input_feeding=True):
    torch.manual_seed(0)
    size = 24 if score in ("dot", "scaled_dot") else 20  # dot scores: decoder size = 2 x encoder size
    cfg = ModelConfig(
        embedding_size=16, encoder_size=12, encoder_layers=1, decoder_size=size, decoder_layers=layers, dropout=dropout
    )
    att = AttentionConfig(type=attention, score=score, size=10, input_feeding=input_feeding)
    return build_model(V_SRC, V_TGT, cfg, att).train()


def batch():
    torch.manual_seed(1)
    src_lens = torch.tensor([9, 5, 2, 7])
    src = torch.randint(4, V_SRC, (4, 9))
    src[torch.arange(9)[None, :] >= src_lens[:, None]] = PAD
    tgt_lens = torch.tensor([6, 8, 3, 5])
    tgt_in = torch.randint(4, V_TGT, (4, 8))
    tgt_in[:, 0] = BOS
    tgt_in[torch.arange(8)[None, :] >= tgt_lens[:, None]] = PAD
    tgt_out = torch.randint(4, V_TGT, (4, 8))
    tgt_out[tgt_in == PAD] = PAD
    return src, src_lens, tgt_in, tgt_out


def loss_and_grads(model, fuse: bool, rng_seed: int = 5):
    """Loss of a random linear function of the logits and attention, and every parameter's gradient."""
    model.decoder.fuse = fuse
    model.zero_grad(set_to_none=True)
    src, src_lens, tgt_in, tgt_out = batch()
    torch.manual_seed(rng_seed)  # the same dropout masks for both loops, where drawn in the same order
    logits, attn = model(src, src_lens, tgt_in)
    probe = torch.Generator().manual_seed(7)
    loss = (logits * torch.randn(logits.shape, generator=probe)).sum()
    loss = loss + (attn * torch.randn(attn.shape, generator=probe)).sum()  # the weights' gradient path too
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), attn.detach(), grads


FUSED = [
    ("bahdanau", "concat"),
    ("bahdanau", "general"),
    ("bahdanau", "dot"),
    ("bahdanau", "scaled_dot"),
    ("luong", "general"),
    ("luong", "concat"),
    ("luong", "dot"),
    ("luong", "scaled_dot"),
]


@pytest.mark.parametrize("attention,score", FUSED)
def test_fused_loop_matches_the_step_loop_with_gradients(attention, score):
    model = make(attention, score)
    calls = []
    original = model.decoder.fused_loop
    model.decoder.fused_loop = lambda *a: calls.append(1) or original(*a)
    want_logits, want_attn, want = loss_and_grads(model, fuse=False)
    assert not calls
    logits, attn, got = loss_and_grads(model, fuse=True)
    assert calls, "the fused loop ran"
    torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attn, want_attn, rtol=1e-5, atol=1e-6)
    assert torch.all(attn[2, :, 2:] == 0) and torch.all(attn[1, :, 5:] == 0)  # padding gets no weight
    assert got.keys() == want.keys() and len(got) == len(list(model.parameters()))
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")


def test_luong_fused_loop_draws_dropout_on_the_fed_back_state():
    """With dropout, the fused Luong loop multiplies each h~ it feeds back by a keep-mask of
    1 / (1 - p) or 0: the same as the step loop given the same masks."""
    model = make("luong", "general", dropout=0.4)
    drop = model.decoder.dropout
    masks = []

    def recording_mask(shape, dtype):
        masks.append(Dropout.mask(drop, shape, dtype))
        return masks[-1]

    drop.mask = recording_mask
    _, _, got = loss_and_grads(model, fuse=True)
    (fed,) = [m for m in masks if m.shape == (8, 4, 20)]  # (T, B, D): one per step and sentence
    assert torch.unique(fed).tolist() == [0.0, torch.tensor(drop.scale).item()]  # 1 / (1 - p)
    assert 0.25 < (fed == 0).float().mean() < 0.55

    # the step loop given the same masks: the embeddings' and the readout's by shape, and each
    # step's (B, D) mask on the h~ it feeds back from the fused pass's (T, B, D) one
    recorded = {tuple(m.shape): m for m in masks if m is not fed}
    steps = iter(fed.unbind(0))
    drop.mask = lambda shape, dtype: recorded.get(tuple(shape)) if tuple(shape) in recorded else next(steps)
    _, _, want = loss_and_grads(model, fuse=False)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")


@pytest.mark.parametrize("case", ["two layers", "bf16", "teacher forcing 0.5"])
def test_the_step_loop_runs_where_the_fused_loop_does_not_apply(case, monkeypatch):
    model = make("bahdanau", "concat", layers=2 if case == "two layers" else 1)
    ran = []
    monkeypatch.setattr(recurrence._BahdanauLoop, "apply", lambda *a: ran.append(1))
    src, src_lens, tgt_in, _ = batch()
    forcing = 0.5 if case == "teacher forcing 0.5" else 1.0
    if case == "bf16":
        memory = model.encode(src, src_lens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not recurrence.fused_loop_applies(memory)
        return
    logits, _ = model(src, src_lens, tgt_in, teacher_forcing=forcing)
    assert logits.shape == (4, 8, V_TGT) and not ran


@pytest.mark.parametrize("loop", ["bahdanau", "luong"])
@pytest.mark.parametrize("additive", [True, False])
def test_fused_loops_pass_gradcheck_in_float64(loop, additive):
    """Finite differences against the hand-written backward pass, every input at once (float64)."""
    g = torch.Generator().manual_seed(3)
    batch, steps, length, hidden, size = 3, 4, 5, 4, 6  # keys_proj is (B, S, A) additive, (B, S, H) dot

    def rand(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).requires_grad_()

    memory, feature = 7, 5
    pre, values = rand(batch, steps, 4 * hidden), rand(batch, length, memory)
    keys = rand(batch, length, size if additive else hidden)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] + [True] * 4])
    h0, c0 = rand(batch, hidden), rand(batch, hidden)
    query_weight, energy = (rand(size, hidden), rand(size)) if additive else (None, None)
    if loop == "bahdanau":
        joint = rand(4 * hidden, memory + hidden)
        inputs = (pre, values, keys, pad, h0, c0, joint, query_weight, energy, additive, 0.7)
        function = recurrence._BahdanauLoop.apply
    else:
        joint, combine = rand(4 * hidden, feature + hidden), rand(feature, memory + hidden)
        drop = (torch.rand(steps, batch, feature, generator=g) > 0.3).double() / 0.7
        inputs = (pre, values, keys, pad, h0, c0, joint, combine, drop, query_weight, energy, additive, 0.7)
        function = recurrence._LuongFeedLoop.apply
    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-5)


def test_the_energy_buffers_are_reused_once_a_pass_is_done_with_them():
    """The additive loop's (T, B, S, A) buffers go back to the pool when the graph is freed, so the
    next batch writes into memory it already has; a pass still in flight keeps its own."""
    model = make("bahdanau", "concat")
    src, src_lens, tgt_in, _ = batch()
    recurrence._POOL.free.clear()
    logits = model(src, src_lens, tgt_in)[0]  # (the attention output would hold the graph too)
    first = model(src, src_lens, tgt_in)[0]  # in flight beside the first: its own buffers
    logits.sum().backward()
    del logits, first
    pooled = recurrence._POOL.free["energy"].data_ptr()
    again = model(src, src_lens, tgt_in)[0]
    assert "energy" not in recurrence._POOL.free  # taken by the pass in flight
    again.sum().backward()
    del again
    assert recurrence._POOL.free["energy"].data_ptr() == pooled and "d_energy" in recurrence._POOL.free


def test_training_after_an_inference_mode_pass_of_any_size():
    """Validation and decoding run under inference mode, with larger batches than training: the
    training pass after them must get buffers it can write (regression: a pooled inference tensor)."""
    model = make("bahdanau", "concat")
    src, src_lens, tgt_in, _ = batch()
    recurrence._POOL.free.clear()
    with torch.inference_mode():  # a validation batch, bigger than the training one
        model(src.repeat(3, 1), src_lens.repeat(3), tgt_in.repeat(3, 1))
    for _ in range(2):
        logits = model(src, src_lens, tgt_in)[0]
        logits.sum().backward()
        del logits
    assert recurrence._POOL.free["energy"].dim() == 1 and not recurrence._POOL.free["energy"].is_inference()
