import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.config import AttentionConfig, ModelConfig
from seq2seq.data.batching import collate, epoch_batches, round_up, token_batches
from seq2seq.data.vocab import BOS, EOS, PAD
from seq2seq.model import build_model
from seq2seq.training.loss import Objective


@settings(max_examples=50, deadline=None)
@given(
    lens=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=200),
    budget=st.integers(1, 400),
    seed=st.integers(0, 99),
    multiple=st.sampled_from([1, 2, 4, 8]),
)
def test_every_pair_once_within_budget(lens, budget, seed, multiple):
    src, tgt = [a for a, _ in lens], [b for _, b in lens]
    batches = token_batches(src, tgt, budget, torch.Generator().manual_seed(seed), multiple)
    assert sorted(i for b in batches for i in b) == list(range(len(lens)))
    for b in batches:
        batch = collate([[5] * src[i] for i in b], [[6] * tgt[i] for i in b], multiple)
        width = max(batch.src.size(1), batch.tgt_in.size(1))
        assert width % multiple == 0
        assert width * len(b) <= budget or len(b) == 1  # the budget counts the padding collate adds


def test_rounded_lengths_give_few_shapes_and_little_padding():
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(3, 40, (4000,), generator=gen).tolist()  # seeded: the same lengths in every test order
    tgt = [max(1, s + d) for s, d in zip(src, torch.randint(-4, 5, (4000,), generator=gen).tolist())]

    def shapes(multiple):
        batches = token_batches(src, tgt, 1000, gen, multiple)
        found = {
            (len(b), round_up(max(src[i] for i in b) + 1, multiple), round_up(max(tgt[i] for i in b) + 1, multiple))
            for b in batches
        }
        real = sum(tgt[i] + 1 for b in batches for i in b)
        return len(found), real / sum(len(b) * round_up(max(tgt[i] for i in b) + 1, multiple) for b in batches)

    exact, rounded = shapes(1), shapes(4)
    assert rounded[0] * 3 < exact[0]
    assert rounded[1] > 0.85


def test_collate_rounds_widths_up():
    b = collate([[5, 6, 7], [8]], [[9], [10, 11, 12, 13]], multiple=4)
    assert b.src.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    assert b.tgt_in.tolist() == [[BOS, 9, PAD, PAD, PAD, PAD, PAD, PAD], [BOS, 10, 11, 12, 13, PAD, PAD, PAD]]
    assert b.tgt_out.tolist() == [[9, EOS, PAD, PAD, PAD, PAD, PAD, PAD], [10, 11, 12, 13, EOS, PAD, PAD, PAD]]
    assert b.src_lens.tolist() == [4, 2] and b.n_tokens == 7


@pytest.mark.parametrize(
    "attention,input_feeding", [("none", True), ("bahdanau", True), ("luong", True), ("luong", False)]
)
def test_extra_padding_changes_neither_loss_nor_gradients(attention, input_feeding):
    """train.pad_to_multiple only adds masked positions: the step's loss and gradients stay the same."""
    torch.manual_seed(0)
    cfg = ModelConfig(embedding_size=16, encoder_size=12, encoder_layers=2, decoder_size=24, dropout=0.0)
    att = AttentionConfig(type=attention, score="general", size=10, input_feeding=input_feeding)
    objective = Objective(build_model(41, 37, cfg, att).double())
    src = [[5, 9, 12, 30, 7], [8, 4], [17, 22, 6]]
    tgt = [[6, 7], [10, 11, 12, 13, 20], [33]]

    def loss_and_grads(multiple):
        objective.zero_grad()
        b = collate(src, tgt, multiple)
        loss, nll = objective(b.src, b.src_lens, b.tgt_in, b.tgt_out, 1.0, 0.1)
        loss.backward()
        return loss, nll, [p.grad.clone() for p in objective.parameters()]

    exact, padded = loss_and_grads(1), loss_and_grads(8)
    torch.testing.assert_close(padded[0], exact[0])
    torch.testing.assert_close(padded[1], exact[1])
    for got, want in zip(padded[2], exact[2]):
        torch.testing.assert_close(got, want)


def test_sorted_batches_have_little_padding():
    gen = torch.Generator().manual_seed(0)
    lens = torch.randint(3, 30, (2000,)).tolist()
    batches = token_batches(lens, lens, 600, gen)
    real = sum(lens[i] + 1 for b in batches for i in b)
    padded = sum(max(lens[i] + 1 for i in b) * len(b) for b in batches)
    assert real / padded > 0.95


def test_epoch_order_depends_only_on_seed_and_epoch():
    lens = list(range(1, 300))
    assert epoch_batches(lens, lens, 100, 7, 3) == epoch_batches(lens, lens, 100, 7, 3)
    assert epoch_batches(lens, lens, 100, 7, 3) != epoch_batches(lens, lens, 100, 7, 4)


def test_collate_pads_exactly():
    b = collate([[5, 6, 7], [8]], [[9], [10, 11, 12, 13]])
    assert b.src.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    assert b.src_lens.tolist() == [4, 2]
    assert b.tgt_in.tolist() == [[BOS, 9, PAD, PAD, PAD], [BOS, 10, 11, 12, 13]]
    assert b.tgt_out.tolist() == [[9, EOS, PAD, PAD, PAD], [10, 11, 12, 13, EOS]]
    assert b.n_tokens == 2 + 5 == int((b.tgt_out != PAD).sum())
