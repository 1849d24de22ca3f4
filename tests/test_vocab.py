import os

from seq2seq.config import DataConfig, VocabConfig
from seq2seq.data.corpora import load_split
from seq2seq.data.vocab import N_SPECIALS, Vocab, build_vocab, cache_dir


def train_texts(corpus_root):
    ds = load_split(DataConfig(root=str(corpus_root)), "train")
    return list(ds["src"]), list(ds["tgt"])


def test_roundtrip_and_side_vocabularies(corpus_root):
    src, tgt = train_texts(corpus_root)
    vocab = build_vocab(src, tgt, VocabConfig(size=400))
    ids = vocab.encode_tgt(tgt[:50])
    assert [vocab.decode_tgt(x) for x in ids] == tgt[:50]  # detokenised text comes back exactly
    assert all(N_SPECIALS <= i < len(vocab.tgt) for x in ids for i in x)
    # each side only gets the pieces it uses: German-only pieces are not target types
    assert len(vocab.src) < 400 + N_SPECIALS and len(vocab.tgt) < 400 + N_SPECIALS
    assert set(vocab.src.to_spm) != set(vocab.tgt.to_spm)


def test_state_dict_roundtrip_and_cache(corpus_root):
    src, tgt = train_texts(corpus_root)
    vocab = build_vocab(src, tgt, VocabConfig(size=300, joint=False))
    models = list((cache_dir() / "spm").glob("*.model"))
    again = build_vocab(src, tgt, VocabConfig(size=300, joint=False))  # from the cache
    assert list((cache_dir() / "spm").glob("*.model")) == models
    restored = Vocab.from_state_dict(vocab.state_dict())
    assert restored.encode_src(src[:20]) == vocab.encode_src(src[:20]) == again.encode_src(src[:20])
    assert restored.fingerprint == vocab.fingerprint
    assert os.path.isdir(cache_dir())
