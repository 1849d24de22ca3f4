"""Greedy and beam search on tiny random models: beam 1 is greedy, a wide beam is exact."""

import itertools

import pytest
import torch

from conftest import DEVICES
from seq2seq.config import AttentionConfig, ModelConfig
from seq2seq.data.vocab import EOS, PAD
from seq2seq.model import build_model
from seq2seq.search import (
    Search,
    beam_search,
    decode_corpus,
    decode_corpus_nbest,
    gnmt_length_penalty,
    greedy_search,
    max_output_lengths,
    score_outputs,
)

V_SRC = 13
ATTENTIONS = [("none", None), ("luong", "general"), ("bahdanau", "concat")]


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster


# (seed, EOS bias) per wiring for which greedy outputs of batch() end at different steps, some
# with EOS and some at the length limit [6, 4, 3, 7], so the search's bookkeeping is exercised.
VARIED = {"none": (3, -0.5), "luong": (1, 0.5), "bahdanau": (1, 0.0)}


def make(attention="bahdanau", score="concat", v_tgt=11, seed=None, eos_bias=None):
    """A tiny model in eval mode, its weights scaled up so that outputs depend on the source."""
    default_seed, default_bias = VARIED[attention]
    torch.manual_seed(default_seed if seed is None else seed)
    cfg = ModelConfig(embedding_size=8, encoder_size=6, decoder_size=10, dropout=0.0)
    att = AttentionConfig(type=attention, score=score or "concat", size=6)
    model = build_model(V_SRC, v_tgt, cfg, att).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(3.0)
        model.generator.bias[EOS] += default_bias if eos_bias is None else eos_bias
    return model


def batch(lens=(5, 3, 1, 4)):
    torch.manual_seed(1)
    src_lens = torch.tensor(lens)
    src = torch.randint(4, V_SRC, (len(lens), max(lens)))
    src[torch.arange(max(lens))[None, :] >= src_lens[:, None]] = PAD
    return src, src_lens


def emitted(hyp, max_len):
    """The steps a hypothesis scored: its tokens, plus EOS unless it stopped at the length limit."""
    return hyp.tokens + [EOS] if len(hyp.tokens) < max_len else hyp.tokens


@pytest.mark.parametrize("attention,score", ATTENTIONS)
def test_beam_one_is_greedy(attention, score):
    model = make(attention, score)
    src, src_lens = batch()
    max_lens = torch.tensor([6, 4, 3, 7])
    greedy = greedy_search(model, src, src_lens, max_lens, return_attention=True)
    beam = beam_search(model, src, src_lens, max_lens, beam=1, length_penalty=0.0, return_attention=True)
    ended = [len(g.tokens) < int(m) for g, m in zip(greedy, max_lens)]
    assert any(ended) and not all(ended)  # some stop at EOS, others at the limit
    for g, (b,) in zip(greedy, beam):
        assert b.tokens == g.tokens
        assert b.score == g.score and b.logprob == g.logprob
        if attention == "none":
            assert b.attention is None and g.attention is None
        else:
            assert torch.equal(b.attention, g.attention)


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_beam_one_with_length_penalty_keeps_greedy_tokens(alpha):
    model = make()
    src, src_lens = batch()
    max_lens = torch.full((4,), 6)
    greedy = greedy_search(model, src, src_lens, max_lens)
    for g, (b,) in zip(greedy, beam_search(model, src, src_lens, max_lens, beam=1, length_penalty=alpha)):
        assert b.tokens == g.tokens and b.logprob == g.logprob
        assert b.score == pytest.approx(g.logprob / gnmt_length_penalty(len(emitted(b, 6)), alpha))


@pytest.mark.parametrize("device", DEVICES)
def test_decode_corpus_beam_one_dispatches_to_greedy(device):
    model = make("luong", "general").to(device)
    ids = [[5, 6, 7], [8], [9, 10, 11, 12, 4]]
    device = torch.device(device)
    plain = decode_corpus(model, ids, device, Search(batch_size=2))
    one = decode_corpus(model, ids, device, Search(batch_size=2, beam=1, length_penalty=1.0))
    assert [h.tokens for h in one] == [h.tokens for h in plain] and [h.score for h in one] == [h.score for h in plain]
    five = decode_corpus_nbest(model, ids, device, Search(batch_size=2, beam=5, nbest=3))
    assert [len(h) for h in five] == [3, 3, 3]


def all_outputs(vocab, max_len):
    """Every output the search can produce: ending with EOS, or cut at ``max_len`` tokens."""
    words = [v for v in range(vocab) if v != EOS]
    outputs = []
    for length in range(1, max_len + 1):
        for prefix in itertools.product(words, repeat=length - 1):
            outputs.append([*prefix, EOS])
    outputs += [list(p) for p in itertools.product(words, repeat=max_len)]
    return outputs


def exhaustive_best(model, src, src_lens, max_len):
    """The highest-probability output of each sentence, by scoring all of them."""
    outputs = all_outputs(model.generator.out_features, max_len)
    best = []
    for row in range(src.size(0)):
        n = len(outputs)
        scores = score_outputs(model, src[row : row + 1].expand(n, -1), src_lens[row : row + 1].expand(n), outputs)
        best.append((scores, outputs))
    return best


@pytest.mark.parametrize("attention,score", ATTENTIONS)
@pytest.mark.parametrize("max_len,width", [(2, "vocab"), (3, "vocab"), (3, "all prefixes")])
def test_wide_beam_finds_the_exhaustive_optimum(attention, score, max_len, width):
    """Alpha 0: the best hypothesis is the global argmax over every possible output.

    A beam as wide as the vocabulary is provably exact for two steps; for three it prunes V x V
    step-2 candidates to V, which is exact on these models but not in general. A beam of V x V
    keeps every prefix and is exact by construction.
    """
    v = 6
    model = make(attention, score, v_tgt=v)
    src, src_lens = batch((4, 2, 5))
    k = v if width == "vocab" else v * v
    found = beam_search(model, src, src_lens, torch.full((3,), max_len), beam=k, length_penalty=0.0)
    for (hyp,), (scores, outputs) in zip(found, exhaustive_best(model, src, src_lens, max_len)):
        top = float(scores.max())
        assert hyp.logprob == pytest.approx(top, abs=1e-5)
        winners = [o for o, s in zip(outputs, scores.tolist()) if s >= top - 1e-5]
        assert emitted(hyp, max_len) in winners


@pytest.mark.parametrize("attention,score", ATTENTIONS)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_nbest_is_sorted_distinct_and_scored_consistently(attention, score, alpha):
    model = make(attention, score)
    src, src_lens = batch()
    max_len = 6
    found = beam_search(model, src, src_lens, torch.full((4,), max_len), beam=5, length_penalty=alpha, nbest=4)
    for row, hyps in enumerate(found):
        assert len(hyps) == 4
        assert len({tuple(h.tokens) for h in hyps}) == 4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        outputs = [emitted(h, max_len) for h in hyps]
        forced = score_outputs(model, src[row : row + 1].expand(4, -1), src_lens[row : row + 1].expand(4), outputs)
        torch.testing.assert_close(forced, torch.tensor([h.logprob for h in hyps]), rtol=0, atol=1e-5)
        for h, out in zip(hyps, outputs):
            assert h.score == pytest.approx(h.logprob / gnmt_length_penalty(len(out), alpha), abs=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_beam_equals_one_sentence_at_a_time(device):
    """A batch searched together (on ``device``) finds what each sentence alone finds on the CPU."""
    model = make("bahdanau")
    src, src_lens = batch()
    max_lens = torch.tensor([7, 4, 3, 6])
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        together = beam_search(
            model.to(device), src.to(device), src_lens, max_lens, beam=4, nbest=2, return_attention=True
        )
    model.cpu()
    for row in range(4):
        n = int(src_lens[row])
        (alone,) = beam_search(
            model, src[row : row + 1, :n], src_lens[row : row + 1], max_lens[row : row + 1], 4, nbest=2
        )
        assert [h.tokens for h in together[row]] == [h.tokens for h in alone]
        assert [h.score for h in together[row]] == pytest.approx([h.score for h in alone], abs=1e-5)
        for h in together[row]:
            assert h.attention.device.type == "cpu"
            assert h.attention.shape == (len(emitted(h, int(max_lens[row]))), n)
            torch.testing.assert_close(h.attention.sum(-1), torch.ones(h.attention.size(0)))


def test_beam_arguments_are_checked():
    model = make()
    src, src_lens = batch()
    with pytest.raises(ValueError, match="nbest"):
        beam_search(model, src, src_lens, torch.full((4,), 5), beam=2, nbest=3)
    with pytest.raises(ValueError, match="nbest"):
        decode_corpus_nbest(model, [[5, 6]], torch.device("cpu"), Search(beam=1, nbest=2))
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(model, src, src_lens, torch.full((4,), 5), beam=2, length_penalty=-1.0)


def test_beam_finds_more_probable_outputs_than_greedy_on_a_trained_model(trained_run, corpus_root, one_thread):
    from seq2seq.config import DataConfig
    from seq2seq.data.corpora import load_split
    from seq2seq.translator import Translator

    translator = Translator.from_checkpoint(trained_run / "best.pt")
    sources = list(load_split(DataConfig(root=str(corpus_root)), "test_2016_flickr")["src"])
    src_ids = translator.vocab.encode_src(sources)
    device = torch.device("cpu")
    greedy = decode_corpus(translator.model, src_ids, device, Search(batch_size=16))
    beam = decode_corpus(translator.model, src_ids, device, Search(batch_size=16, beam=5, length_penalty=0.0))
    assert mean_logprob(beam) > mean_logprob(greedy)
    assert sum(b.logprob >= g.logprob - 1e-5 for b, g in zip(beam, greedy)) >= 0.9 * len(sources)


def mean_logprob(hyps) -> float:
    return sum(h.logprob for h in hyps) / len(hyps)


def test_bf16_decoding_scores_what_fp32_scores(trained_run, corpus_root, one_thread):
    """Decoding under bf16 autocast: float32 rescoring of its outputs gives nearly its own scores."""
    from seq2seq.config import DataConfig
    from seq2seq.data.batching import source_tensor
    from seq2seq.data.corpora import load_split
    from seq2seq.errors import ConfigError
    from seq2seq.hardware import bf16_lstm_runs
    from seq2seq.translator import Translator

    if not bf16_lstm_runs(torch.device("cpu")):  # this CPU cannot: the same request is refused
        with pytest.raises(ConfigError, match=r"--precision=bf16 but .* use --precision=fp32"):
            Translator.from_checkpoint(trained_run / "best.pt", precision="bf16")
        return
    translator = Translator.from_checkpoint(trained_run / "best.pt", precision="bf16")
    assert translator.precision == "bf16"
    sources = list(load_split(DataConfig(root=str(corpus_root)), "test_2016_flickr")["src"])[:64]
    src_ids = translator.vocab.encode_src(sources)
    hyps = [h[0] for h in translator.nbest(sources)]
    src, src_lens = source_tensor(src_ids)
    limits = max_output_lengths(src_lens, translator.config.train.max_output_ratio).tolist()
    outputs = [emitted(h, limit) for h, limit in zip(hyps, limits)]
    rescored = score_outputs(translator.model, src, src_lens, outputs)  # no autocast here: float32
    steps = sum(len(o) for o in outputs)
    gap = sum(abs(h.logprob - float(r)) for h, r in zip(hyps, rescored)) / steps
    assert 0 < gap < 0.02, gap  # nats per output token; 0 would mean bf16 never ran (measured: 0.001)


def tiny_transformer_with_a_shared_table():
    """A tiny Transformer whose source and target read their own rows of one table (a joint vocabulary)."""
    from seq2seq.config import TransformerConfig
    from seq2seq.model.transformer import Transformer

    torch.manual_seed(2)
    cfg = TransformerConfig(d_model=16, heads=2, ff_size=32, encoder_layers=1, decoder_layers=2, dropout=0.0)
    shared = (list(range(V_SRC)), [0, 1, 2, 3, *range(V_SRC, V_SRC + 7)])  # specials shared, 7 target pieces
    model = Transformer(V_SRC, 11, cfg, shared=shared).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(2.0)
    return model


@pytest.mark.parametrize("compact_every", [1, 4, 1000])
@pytest.mark.parametrize("family", ["lstm", "transformer"])
def test_greedy_batch_equals_each_sentence_alone_however_finished_rows_are_dropped(family, compact_every, monkeypatch):
    """Finished rows stay in the batch until enough have finished (``COMPACT_EVERY``); what each sentence gets,
    its tokens, log-probability and attention rows, is what it gets decoded alone."""
    monkeypatch.setattr("seq2seq.search.COMPACT_EVERY", compact_every)
    model = make("bahdanau") if family == "lstm" else tiny_transformer_with_a_shared_table()
    src, src_lens = batch((5, 3, 1, 4, 2, 5, 3, 4))
    max_lens = torch.tensor([7, 4, 3, 6, 2, 8, 5, 6])
    together = greedy_search(model, src, src_lens, max_lens, return_attention=True)
    assert len({len(h.tokens) for h in together}) > 2, "the outputs should end at different steps"
    for row, hyp in enumerate(together):
        n = int(src_lens[row])
        (alone,) = greedy_search(model, src[row : row + 1, :n], src_lens[row : row + 1], max_lens[row : row + 1], True)
        assert hyp.tokens == alone.tokens
        assert hyp.logprob == pytest.approx(alone.logprob, abs=1e-5)
        torch.testing.assert_close(hyp.attention, alone.attention, atol=1e-5, rtol=0)


def test_the_tied_output_layer_follows_every_update_of_the_shared_table():
    """Outside autograd the target's rows of the table are gathered once per version of the table: an
    optimiser step (an in-place update) must reach the next decoding, as validation during training needs."""
    model = tiny_transformer_with_a_shared_table()
    src, src_lens = batch()
    max_lens = torch.full((4,), 6)
    greedy_search(model, src, src_lens, max_lens)  # the rows are gathered and kept
    with torch.no_grad():
        model.decoder.embedding.table.weight.add_(torch.randn_like(model.decoder.embedding.table.weight))
    rows = model.decoder.embedding.rows
    with torch.no_grad():
        torch.testing.assert_close(model.generator.weight, model.decoder.embedding.table.weight[rows], atol=0, rtol=0)
    first = greedy_search(model, src, src_lens, max_lens)
    model.decoder.embedding._rows_of = None  # gathered afresh
    assert [h.tokens for h in first] == [h.tokens for h in greedy_search(model, src, src_lens, max_lens)]
