"""The Transformer (``model=transformer``): masks, padding, the key/value cache, positions, the fused path, learning."""

from __future__ import annotations

import pytest
import torch

from conftest import compose
from seq2seq.config import TransformerConfig
from seq2seq.errors import ConfigError, DataError
from seq2seq.model.layers import MultiHeadAttention, RelativeBias, Rotary
from seq2seq.model.transformer import Transformer, recording
from seq2seq.search import beam_search, greedy_search

V_SRC, V_TGT = 40, 50
POSITIONS = ["sinusoidal", "learned", "relative", "rope"]


def tiny(positions="sinusoidal", norm="pre", seed=0, **kw) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(
        d_model=32, heads=4, ff_size=64, encoder_layers=2, decoder_layers=2, positions=positions, norm=norm,
        relative_buckets=8, max_positions=64, **kw,
    )  # fmt: skip
    return Transformer(V_SRC, V_TGT, cfg).eval()


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V_SRC, (3, 9), generator=g)
    lens = torch.tensor([9, 6, 3])
    src[1, 6:] = 0
    src[2, 3:] = 0
    tgt = torch.randint(4, V_TGT, (3, 7), generator=g)
    return src, lens, tgt


@pytest.mark.parametrize("positions", POSITIONS)
def test_a_later_target_token_changes_no_earlier_position(positions):
    model = tiny(positions)
    src, lens, tgt = batch()
    changed = tgt.clone()
    changed[:, 4] = (changed[:, 4] + 7) % (V_TGT - 4) + 4
    with torch.no_grad():
        a, _ = model(src, lens, tgt)
        b, _ = model(src, lens, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-5, rtol=0)  # position t reads tokens 0..t
    assert (a[:, 4:] - b[:, 4:]).abs().max() > 1e-3


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_a_sentence_alone_equals_it_in_a_padded_batch(positions, norm):
    model = tiny(positions, norm)
    src, lens, tgt = batch()
    with torch.no_grad():
        states, _ = model.encoder(src, lens)
        logits, weights = model(src, lens, tgt)
        alone_states, _ = model.encoder(src[2:, :3], lens[2:])
        alone_logits, alone_weights = model(src[2:, :3], lens[2:], tgt[2:])
    torch.testing.assert_close(states[2:, :3], alone_states, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[2:], alone_logits, atol=1e-5, rtol=0)
    assert weights[2, :, 3:].abs().max() == 0  # padding gets exactly zero weight
    torch.testing.assert_close(weights[2:, :, :3], alone_weights, atol=1e-6, rtol=0)


@pytest.mark.parametrize("positions", POSITIONS)
def test_decoding_with_the_cache_equals_the_full_pass(positions):
    model = tiny(positions)
    src, lens, tgt = batch()
    with torch.no_grad():
        logits, weights = model(src, lens, tgt)
        memory, state, steps, rows = model.encode(src, lens), None, [], []
        state = model.init_state(memory)
        for t in range(tgt.size(1)):
            logp, state, w = model.step_logits(tgt[:, t], state, memory)
            steps.append(logp)
            rows.append(w)
    torch.testing.assert_close(torch.stack(steps, 1), torch.log_softmax(logits, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(rows, 1), weights, atol=1e-6, rtol=0)
    assert state.length == tgt.size(1) and state.layers[0][0].shape == (3, 4, tgt.size(1), 8)


def forced_logprob(model, src, src_len, tokens, eos=3):
    """log P(tokens + EOS | src) by the full (uncached) pass."""
    tgt = torch.tensor([[2, *tokens]])  # BOS + tokens
    out = torch.tensor([*tokens, eos])
    with torch.no_grad():
        logits, _ = model(src[None, :src_len], torch.tensor([src_len]), tgt)
    return float(torch.log_softmax(logits[0], -1).gather(1, out[:, None]).sum())


@pytest.mark.parametrize("positions", ["sinusoidal", "rope"])
def test_greedy_and_beam_scores_equal_the_full_pass(positions):
    model = tiny(positions, seed=3)
    src, lens, _ = batch()
    limits = torch.tensor([6, 6, 6])
    greedy = greedy_search(model, src, lens, limits)
    beams = beam_search(model, src, lens, limits, beam=3, length_penalty=0.0, nbest=3)
    for b in range(3):
        hyp = greedy[b]
        if len(hyp.tokens) < 6:  # finished with EOS: its log-probability is the forced one
            assert hyp.logprob == pytest.approx(forced_logprob(model, src[b], int(lens[b]), hyp.tokens), abs=1e-4)
        for hyp in beams[b]:
            if len(hyp.tokens) < 6:
                assert hyp.logprob == pytest.approx(forced_logprob(model, src[b], int(lens[b]), hyp.tokens), abs=1e-4)


def test_rotary_scores_depend_only_on_the_offset():
    rotary = Rotary(8)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)

    def score(i, j):
        return float((rotary(q, torch.tensor([i])) * rotary(k, torch.tensor([j]))).sum())

    assert score(3, 1) == pytest.approx(score(103, 101), abs=1e-4)
    assert score(0, 5) == pytest.approx(score(40, 45), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_bias_depends_only_on_the_offset(bidirectional):
    torch.manual_seed(0)
    bias = RelativeBias(heads=2, buckets=8, max_distance=32, bidirectional=bidirectional)
    q, k = torch.arange(10), torch.arange(12)
    shifted = bias(q + 50, k + 50)
    torch.testing.assert_close(bias(q, k), shifted)
    assert bias(q, k)[0, 0, 5, 5] != bias(q, k)[0, 0, 5, 1]


@pytest.mark.parametrize("positions", ["relative", "rope"])
def test_the_whole_model_sees_relative_positions_only(positions):
    """Self-attention scores of the encoder's first layer, shifted: the same (no absolute position anywhere)."""
    model = tiny(positions)
    layer = model.encoder.layers[0].self_attention
    x = torch.randn(1, 5, 32)
    bias = model.encoder.bias

    def scores(start):
        p = torch.arange(start, start + 5)
        s = layer.score(layer.query(x, p), layer.prepare(x, p))
        return s if bias(p, p) is None else s + bias(p, p)

    torch.testing.assert_close(scores(0), scores(37), atol=1e-4, rtol=0)


def test_the_fused_attention_equals_the_recorded_one():
    torch.manual_seed(0)
    attention = MultiHeadAttention(32, 4, dropout=0.0).eval()
    x, m = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :]
    bias = torch.randn(1, 4, 5, 7)
    k, v = attention.prepare(m), attention.prepare_values(m)
    for b in (None, bias):
        fused, none = attention(x, k, v, mask, b)
        explicit, weights = attention(x, k, v, mask, b, need_weights=True)
        assert none is None and weights.shape == (2, 4, 5, 7)
        torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=0)
        assert weights[1, :, :, 4:].abs().max() == 0
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5))


def test_the_recorder_keeps_every_module_per_head():
    model = tiny()
    src, lens, tgt = batch()
    with torch.no_grad(), recording(model) as calls:
        model(src, lens, tgt)
    assert sorted(calls) == sorted(
        ["encoder.0.self", "encoder.1.self", "decoder.0.self", "decoder.1.self", "decoder.0.cross", "decoder.1.cross"]
    )
    assert calls["encoder.1.self"][0]["weights"].shape == (3, 4, 9, 9)
    assert calls["decoder.0.cross"][0]["scores"].shape == (3, 4, 7, 9)
    causal = calls["decoder.1.self"][0]["weights"]
    assert causal[:, :, 2, 3:].abs().max() == 0  # no position looks ahead
    assert all(module.record is None for module in model.attention_modules().values())


def test_a_learned_table_refuses_a_longer_input_in_one_line():
    model = tiny("learned")
    src = torch.randint(4, V_SRC, (1, 70))
    with pytest.raises(DataError, match="longer than the learned position table .model.max_positions=64"):
        model.encode(src, torch.tensor([70]))


def test_decoding_with_a_learned_table_stops_at_its_end():
    from seq2seq.search import Search, decode_corpus

    model = tiny("learned")  # max_positions 64; an untrained model rarely writes EOS
    src = [list(range(4, 40))]  # 36 tokens: 2 x 37 + 10 would pass the table's end
    for beam in (1, 3):
        (hyp,) = decode_corpus(model, src, torch.device("cpu"), Search(beam=beam, max_ratio=2.0))
        assert len(hyp.tokens) <= 64


def test_a_tiny_transformer_learns_to_reverse_a_sequence(one_thread):
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=32, heads=2, ff_size=64, encoder_layers=1, decoder_layers=1, dropout=0.0,
                            attention_dropout=0.0)  # fmt: skip
    model = Transformer(12, 12, cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(500):  # 300 left an AVX2-only CPU's kernels at 12 of 16; 400 reached 16 on both
        seq = torch.randint(4, 12, (32, 6), generator=g)
        tgt = seq.flip(1)
        tgt_in = torch.cat([torch.full((32, 1), 2), tgt], 1)
        tgt_out = torch.cat([tgt, torch.full((32, 1), 3)], 1)
        logits, _ = model(seq, torch.full((32,), 6), tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    seq = torch.randint(4, 12, (16, 6), generator=torch.Generator().manual_seed(99))
    hyps = greedy_search(model, seq, torch.full((16,), 6), torch.full((16,), 8))
    right = sum(h.tokens == s.flip(0).tolist() for h, s in zip(hyps, seq))
    assert right >= 15, f"{right} of 16 reversed"


# -- configuration ---------------------------------------------------------------------------


def test_heads_that_do_not_divide_the_model_size_name_both_and_the_nearest_counts():
    with pytest.raises(ConfigError, match=r"model.heads=5 does not divide model.d_model=256; .* 4 and 8"):
        compose(["model=transformer", "model.heads=5"])


@pytest.mark.parametrize(
    "override, says",
    [
        ("attention=luong", "attention=luong .attention.type. configures the LSTM decoders"),
        ("attention.heads=4", "attention.heads. configures the LSTM decoders"),
        ("train.teacher_forcing=0.8", "applies to model=lstm only"),
    ],
)
def test_lstm_settings_with_the_transformer_are_refused_in_one_line(override, says):
    with pytest.raises(ConfigError, match=says):
        compose(["model=transformer", override])


def test_the_other_familys_key_says_which_model_it_belongs_to():
    from seq2seq.overrides import check_overrides

    with pytest.raises(ConfigError, match="model.bidirectional is a setting of model=lstm; model=transformer has"):
        check_overrides(["model=transformer", "model.bidirectional=false"])
    with pytest.raises(ConfigError, match="model.positions is a setting of model=transformer"):
        check_overrides(["model.positions=rope"])


def test_an_attention_setting_of_another_preset_names_the_preset_that_has_it():
    from seq2seq.overrides import check_overrides

    with pytest.raises(
        ConfigError,
        match=r"attention.input_feeding is a setting of attention=luong, the LSTM .*model=transformer attends",
    ):
        check_overrides(["model=transformer", "attention.input_feeding=false"])
    with pytest.raises(
        ConfigError, match="attention.input_feeding is a setting of attention=luong; attention=bahdanau has type"
    ):
        check_overrides(["attention.input_feeding=false"])
    check_overrides(["attention=luong", "attention.input_feeding=false"])  # where it belongs, it is a setting


def test_a_config_written_before_the_model_families_is_an_lstm():
    from seq2seq.config import Config, ModelConfig

    old = Config().to_dict()
    del old["model"]["family"]
    config = Config.from_dict(old)
    assert isinstance(config.model, ModelConfig) and config.model.family == "lstm"


def test_the_default_transformer_is_close_to_the_default_lstm_in_size():
    from seq2seq.model import build_model

    config = compose(["model=transformer"])
    transformer = build_model(5476, 4274, config.model, config.attention)
    lstm = build_model(5476, 4274, compose([]).model, compose([]).attention)
    n = [sum(p.numel() for p in m.parameters()) / 1e6 for m in (transformer, lstm)]
    assert abs(n[0] - n[1]) / n[1] < 0.3, n


def test_replay_keeps_every_module_for_the_first_sentences_and_the_reported_one_for_all():
    """The explorer keeps every layer for its first (full) sentences only; the others' replay skips the
    other modules, and what it keeps is what the full replay gives, which is what decoding reported."""
    from seq2seq.data.batching import source_tensor
    from seq2seq.lesson_layers import last_cross, replay

    model = tiny("rope")
    src, lens, _ = batch()
    src_ids = [src[i, : int(lens[i])].tolist() for i in range(3)]
    src, lens = source_tensor(src_ids)  # as decoding sees them: EOS appended
    hyps = greedy_search(model, src, lens, torch.tensor([6, 6, 6]), return_attention=True)
    outputs = [h.tokens + [3] if len(h.tokens) < 6 else h.tokens for h in hyps]
    full_reported, full = replay(model, src_ids, outputs)
    some_reported, some = replay(model, src_ids, outputs, every_module=1)
    reported = last_cross(model)
    assert set(some[0]) == set(full[0]) == set(model.attention_modules())
    assert [set(entry) for entry in some[1:]] == [{reported}, {reported}]
    for k in range(3):
        for name, steps in some[k].items():
            torch.testing.assert_close(steps.weights, full[k][name].weights, atol=0, rtol=0)
        torch.testing.assert_close(some_reported[k].weights, hyps[k].attention, atol=1e-5, rtol=0)
