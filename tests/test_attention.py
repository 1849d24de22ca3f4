"""The attention math, against hand-written references on small tensors (the lesson's formulas)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.model.attention import ConcatScore, DotScore, GeneralScore, ScaledDotScore, build_attention

B, S, H = 3, 5, 8


@pytest.fixture
def qkv():
    torch.manual_seed(0)
    return torch.randn(B, H), torch.randn(B, S, H), torch.randn(B, S, H)


def full_mask():
    return torch.ones(B, S, dtype=torch.bool)


def test_dot_is_softmax_of_q_dot_k_times_v(qkv):
    query, keys, values = qkv
    context, weights = DotScore()(query, keys, values, full_mask())
    # The lesson: scores = bmm(q.unsqueeze(1), K^T); weights = softmax; context = weights @ V.
    scores = torch.bmm(query.unsqueeze(1), keys.transpose(1, 2)).squeeze(1)  # (B, S)
    expected_w = F.softmax(scores, dim=-1)
    torch.testing.assert_close(weights, expected_w)
    torch.testing.assert_close(context, torch.bmm(expected_w.unsqueeze(1), values).squeeze(1))
    assert context.shape == (B, H) and weights.shape == (B, S)


def test_dot_by_explicit_loops(qkv):
    query, keys, values = qkv
    _, weights = DotScore()(query, keys, values, full_mask())
    for b in range(B):
        scores = [sum(query[b, h].item() * keys[b, s, h].item() for h in range(H)) for s in range(S)]
        exp = [math.exp(x - max(scores)) for x in scores]
        for s in range(S):
            assert weights[b, s].item() == pytest.approx(exp[s] / sum(exp), rel=1e-5)


def test_scaled_dot_divides_by_sqrt_d(qkv):
    query, keys, values = qkv
    _, weights = ScaledDotScore(H)(query, keys, values, full_mask())
    scores = torch.einsum("bh,bsh->bs", query, keys) / math.sqrt(H)
    torch.testing.assert_close(weights, F.softmax(scores, dim=-1))


def test_general_is_q_W_k(qkv):
    query, keys, values = qkv
    attn = GeneralScore(H, H)
    _, weights = attn(query, keys, values, full_mask())
    W = attn.key_layer.weight  # (H_q, K)
    scores = torch.einsum("bq,qk,bsk->bs", query, W, keys)
    torch.testing.assert_close(weights, F.softmax(scores, dim=-1))


def test_additive_is_v_tanh_Wq_q_plus_Wk_k(qkv):
    query, keys, values = qkv
    attn = ConcatScore(H, H, size=6)
    _, weights = attn(query, keys, values, full_mask())
    Wq, Wk, v = attn.query_layer.weight, attn.key_layer.weight, attn.energy_layer.weight.squeeze(0)
    scores = torch.empty(B, S)
    for b in range(B):
        for s in range(S):
            scores[b, s] = v @ torch.tanh(Wq @ query[b] + Wk @ keys[b, s])
    torch.testing.assert_close(weights, F.softmax(scores, dim=-1))


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general", "concat"])
def test_masked_positions_get_exactly_zero(score, qkv):
    query, keys, values = qkv
    lengths = torch.tensor([5, 3, 1])
    mask = torch.arange(S)[None, :] < lengths[:, None]
    context, weights = build_attention(score, H, H, 6)(query, keys, values, mask)
    assert torch.all(weights[~mask] == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    # padding cannot leak into the context: changing padded values changes nothing
    values2 = values.masked_fill(~mask.unsqueeze(-1), 1e6)
    context2, _ = (
        build_attention(score, H, H, 6)(query, keys, values2, mask) if score in ("dot", "scaled_dot") else (None, None)
    )
    if context2 is not None:
        torch.testing.assert_close(context, context2)
    assert torch.all(weights[2, 1:] == 0) and weights[2, 0] == 1.0


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general", "concat"])
def test_all_steps_at_once_equals_step_by_step(score):
    torch.manual_seed(1)
    attn = build_attention(score, H, H, 6)
    queries, keys = torch.randn(B, 4, H), torch.randn(B, S, H)
    mask = torch.arange(S)[None, :] < torch.tensor([5, 2, 4])[:, None]
    prepared = attn.prepare(keys)
    context, weights = attn(queries, keys, keys, mask, prepared)  # (B, T, H), (B, T, S)
    for t in range(4):
        c_t, w_t = attn(queries[:, t], keys, keys, mask, prepared)
        torch.testing.assert_close(context[:, t], c_t)
        torch.testing.assert_close(weights[:, t], w_t)


def test_dot_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="equal query and key sizes"):
        build_attention("dot", 4, 6)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    src=st.integers(1, 9),
    steps=st.integers(1, 3),
    size=st.integers(1, 12),
    score=st.sampled_from(["dot", "scaled_dot", "general", "concat"]),
    seed=st.integers(0, 10_000),
)
def test_weights_are_distributions_over_real_positions(batch, src, steps, size, score, seed):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, src + 1, (batch,), generator=gen)
    mask = torch.arange(src)[None, :] < lengths[:, None]
    attn = build_attention(score, size, size, 5)
    query = torch.randn(batch, steps, size, generator=gen) * 3
    keys = torch.randn(batch, src, size, generator=gen)
    context, weights = attn(query, keys, keys, mask)
    assert context.shape == (batch, steps, size) and weights.shape == (batch, steps, src)
    assert torch.all(weights.masked_select(~mask.unsqueeze(1)) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch, steps))
    assert torch.all(weights >= 0)
