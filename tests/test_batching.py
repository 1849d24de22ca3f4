import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.batching import collate, epoch_batches, token_batches
from seq2seq.model import BOS, EOS, PAD


@settings(max_examples=50, deadline=None)
@given(
    lens=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=200),
    budget=st.integers(1, 400),
    seed=st.integers(0, 99),
)
def test_every_pair_once_within_budget(lens, budget, seed):
    src, tgt = [a for a, _ in lens], [b for _, b in lens]
    batches = token_batches(src, tgt, budget, torch.Generator().manual_seed(seed))
    assert sorted(i for b in batches for i in b) == list(range(len(lens)))
    for b in batches:
        padded = max(max(src[i], tgt[i]) + 1 for i in b) * len(b)
        assert padded <= budget or len(b) == 1


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
