# %% [markdown]
# # Attention, from the lesson to a translator you trained
#
# The lesson computes attention on random tensors: a query is compared with every key, the scores
# go through a softmax, and the weights mix the values into a context vector. This notebook runs
# that code, then the same computation with this trainer's own attention modules, then what the
# lesson says comes next (a sequence attending to itself, several heads, the decoder's causal mask,
# positions) with the Transformer's own module. Then it trains a small English→French translator
# on a CPU for a few minutes (the Tatoeba pairs of the PyTorch tutorial), translates a sentence of
# the lesson's kind, draws where each output word looked, writes the explorer page where you can
# play the translation step by step, and shows how to train a Transformer the same way.
#
# Open it as a notebook with jupytext (`pip install jupytext`, then *Open as notebook* in
# Jupyter, VS Code or Colab), or run it top to bottom: `python examples/attention_lesson.py`.
# The corpus comes from `$SEQ2SEQ_DATA_DIR` (default `../shared/corpora` beside the repository).

# %%
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path.cwd() if (Path.cwd() / "configs").is_dir() else Path.cwd().parent
CORPORA = os.environ.get("SEQ2SEQ_DATA_DIR", str(REPO.parent / "shared" / "corpora"))
QUICK = os.environ.get("SEQ2SEQ_LESSON_QUICK") == "1"  # CI: a smaller model and a few hundred updates
OUT = Path(os.environ.get("SEQ2SEQ_LESSON_OUT", REPO / "outputs" / "lesson"))
_ = torch.manual_seed(0)  # the same random tensors on every run

# %% [markdown]
# ## 1. The lesson's attention, on random tensors
#
# A query `(batch, hidden)`, keys and values `(batch, seq_len, hidden)`; scores are dot products.

# %%
batch, seq_len, hidden = 2, 6, 16
query = torch.randn(batch, hidden)
keys = torch.randn(batch, seq_len, hidden)
values = keys  # in the trainer, the encoder states are both the keys and the values


def lesson_attention(query, keys, values):
    scores = torch.matmul(query.unsqueeze(1), keys.transpose(-2, -1))  # (batch, 1, seq_len)
    weights = F.softmax(scores, dim=-1)
    output = torch.matmul(weights, values)  # (batch, 1, hidden)
    return output.squeeze(1), weights.squeeze(1)


context, weights = lesson_attention(query, keys, values)
print("weights", tuple(weights.shape), "each row sums to", [round(s, 6) for s in weights.sum(-1).tolist()])

# %% [markdown]
# ## 2. The same numbers from the trainer's attention modules
#
# `build_attention("dot", ...)` is the module a Luong model with a dot score runs at every
# decoding step. On the lesson's tensors it gives the lesson's weights; the other score functions
# (scaled dot, general, additive) give their own. `one_step` reads a call the way the explorer's
# step panel reads a trained model: raw scores, the softmax written out, the context.

# %%
from seq2seq.lesson import FORMULAS, one_step, panel_lines  # noqa: E402
from seq2seq.model.attention import build_attention  # noqa: E402

mask = torch.ones(batch, seq_len, dtype=torch.bool)  # every position is real here
dot = build_attention("dot", hidden, hidden)
with torch.no_grad():
    module_context, module_weights = dot(query, keys, values, mask)
assert torch.allclose(module_weights, weights, atol=1e-6) and torch.allclose(module_context, context, atol=1e-5)
print("the trainer's dot attention gives the lesson's weights")

for score in FORMULAS:
    attention = build_attention(score, hidden, hidden, size=hidden)
    steps = one_step(attention, query, keys, values, mask)[0]
    print("\n".join(panel_lines(score, [f"k{i}" for i in range(seq_len)], steps, 0, title=f"{score}:")))
    print()

# %% [markdown]
# Scaling by `1/√d` keeps dot-product scores from growing with the dimension: the unscaled
# weights above are peakier (one key takes almost everything), the scaled ones softer.

# %%
print("dot        max weight", round(float(weights.max(-1).values[0]), 3))
scaled = build_attention("scaled_dot", hidden, hidden)
with torch.no_grad():
    print(
        "scaled_dot max weight",
        round(float(scaled(query, keys, values, mask)[1].max(-1).values[0]), 3),
        f"(÷ √{hidden})",
    )
assert math.isclose(1 / math.sqrt(hidden), scaled.scale)

# %% [markdown]
# ## 3. A sequence attends to itself
#
# The lesson ends: *"Self-attention: sequence attends to itself. Multi-head: multiple attention
# patterns in parallel. These build up to transformers."* Take one sequence `x` of shape
# `(batch, seq_len, hidden)`, the lesson's `keys`, and let it be the queries, the keys and the
# values at once: every position asks every position, itself included. The weights are now a
# `seq_len × seq_len` square, one softmax per row (row i: where position i looks).
#
# The trainer's Transformer does this with `MultiHeadAttention` (`seq2seq/model/layers.py`):
# learned projections `W_Q x`, `W_K x`, `W_V x`, the scaled dot score, the softmax, and `W_O` on
# the result. Here with one head, on the lesson's tensors:

# %%
from seq2seq.model.layers import MultiHeadAttention, Rotary, sinusoidal_table  # noqa: E402
from seq2seq.plots import attention_figure, heads_figure  # noqa: E402

x = keys  # (batch, seq_len, hidden): one sequence per example
labels = [f"x{i}" for i in range(seq_len)]
no_padding = torch.ones(batch, 1, 1, seq_len, dtype=torch.bool)  # (B, 1, 1, S): every position is a key


def attend_to_itself(attention, x, mask, positions=None):
    """Queries, keys and values all from x: out (B, S, hidden), weights (B, heads, S, S)."""
    with torch.no_grad():
        k, v = attention.prepare(x, positions), attention.prepare_values(x)  # W_K x, W_V x
        return attention(x, k, v, mask, positions=positions, need_weights=True)  # W_Q x inside


one_head = MultiHeadAttention(hidden, heads=1, dropout=0.0)
self_out, self_weights = attend_to_itself(one_head, x, no_padding)
print("out", tuple(self_out.shape), " weights", tuple(self_weights.shape), "(batch, heads, queries, keys)")
print(self_weights[0, 0].numpy().round(3))
print("example 0, row sums", [round(s, 4) for s in self_weights[0, 0].sum(-1).tolist()])
figure = attention_figure(self_weights[0, 0].numpy(), labels, labels, title="x attends to itself (one head)")
figure.axes[0].set(xlabel="key x_j", ylabel="query x_i")
figure  # noqa: B018 (a notebook shows the heatmap here)

# %% [markdown]
# Nothing new is hidden inside: written out by hand, it is the lesson's arithmetic with the
# projections in front, `softmax(Q Kᵀ / √h) V` for each head (h: a head's size), the heads side
# by side, then `W_O`.


# %%
# the module's forward pass, one line per step of the formula
def by_hand(attention, x, mask):
    h = attention.head_size
    Q = x @ attention.query_layer.weight.T + attention.query_layer.bias  # (B, S, hidden)
    K = x @ attention.key_layer.weight.T  # W_K has no bias: it would add the same to every score of a row
    V = x @ attention.value_layer.weight.T + attention.value_layer.bias
    heads = []
    for n in range(attention.heads):
        part = slice(n * h, (n + 1) * h)  # head n's slice of every vector
        scores = Q[..., part] @ K[..., part].transpose(1, 2) / math.sqrt(h)  # (B, S, S)
        weights = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        heads.append(weights @ V[..., part])  # (B, S, h)
    return torch.cat(heads, -1) @ attention.output_layer.weight.T + attention.output_layer.bias


with torch.no_grad():
    difference = float((self_out - by_hand(one_head, x, no_padding[:, 0])).abs().max())
assert difference < 1e-6
print(f"one head, by hand: max |module - by hand| = {difference:.1e} (under 1e-6)")

# %% [markdown]
# ### Multi-head: several patterns in parallel
#
# With 4 heads each head gets its own quarter of `W_Q x`, `W_K x` and `W_V x`, so its own scores
# and its own softmax: four different squares, each row still summing to 1. The Transformer
# (`model.heads`, 4 by default) joins the heads' contexts with `W_O`; pictures of a trained model
# often show their mean.

# %%
four_heads = MultiHeadAttention(hidden, heads=4, dropout=0.0)
heads_out, heads_weights = attend_to_itself(four_heads, x, no_padding)  # weights (B, 4, S, S)
for n in range(4):
    looks = [labels[int(j)] for j in heads_weights[0, n].argmax(-1)]
    print(
        f"head {n + 1}: each row looks most at {looks}, row sums",
        [round(s, 4) for s in heads_weights[0, n].sum(-1).tolist()],
    )
with torch.no_grad():
    difference = float((heads_out - by_hand(four_heads, x, no_padding[:, 0])).abs().max())
assert difference < 1e-6
print(f"4 heads, by hand: max |module - by hand| = {difference:.1e} (under 1e-6)")
picture = heads_figure(heads_weights[0].numpy(), labels, labels)
picture.set_figheight(picture.get_figheight() + 0.6)  # room for the labels under six short rows
for ax in picture.axes[:-1]:  # the last is the colour bar
    ax.set_xlabel("key x_j")
picture.axes[0].set_ylabel("query x_i")
picture  # noqa: B018 (a notebook shows the heatmaps here)

# %% [markdown]
# ### Causal self-attention: the decoder's
#
# A translation is written left to right. When the decoder writes word i, the words after it do
# not exist yet; in training the whole target is there at once, so a mask hides them: position i
# may look at positions j ≤ i only. Masked scores become −∞ before the softmax, so the future gets
# a weight of exactly 0, and changing later words cannot change earlier outputs.

# %%
positions = torch.arange(seq_len)
causal = positions[None, :] <= positions[:, None]  # (S, S): the Transformer decoder's own mask
print(causal.int().numpy())
causal_out, causal_weights = attend_to_itself(four_heads, x, causal)
print(causal_weights[0, 0].numpy().round(3))
print("above the diagonal: max weight", float(causal_weights.triu(diagonal=1).max()), "in every example and head")
later = x.clone()
later[:, 3:] = torch.randn(batch, seq_len - 3, hidden)  # other words at positions 3, 4, 5
changed = float((attend_to_itself(four_heads, later, causal)[0] - causal_out)[:, :3].abs().max())
print(f"other words at x3..x5: the outputs at x0..x2 change by {changed:.1e}")

# %% [markdown]
# ### Positions
#
# Nothing above knows where a word stands: shuffle the words and the outputs are shuffled the same
# way (self-attention is *permutation-equivariant*), so "dog bites man" would read as "man bites
# dog". The Transformer adds positions. Sinusoidal ones (`model.positions=sinusoidal`, the paper's)
# add `PE(p)` to the word at position p, which breaks the symmetry. Rotary ones (`rope`) turn q and
# k by their positions, so a score depends only on the offset between them: the score of x2 at
# position 3 with x4 at 1 equals that at 103 and 101.

# %%
order = [3, 0, 5, 1, 4, 2]
shuffled = attend_to_itself(four_heads, x[:, order], no_padding)[0]
equivariant = float((shuffled - heads_out[:, order]).abs().max())
print(f"no positions, permutation-equivariant: max |attend(shuffled x) - shuffled attend(x)| = {equivariant:.1e}")

table = sinusoidal_table(positions, hidden)  # (S, hidden): PE(p, 2i) = sin(p / 10000^(2i/d)), cos for 2i+1
moved = attend_to_itself(four_heads, x[:, order] + table, no_padding)[0]
kept = attend_to_itself(four_heads, x + table, no_padding)[0][:, order]
print(
    f"sinusoidal positions added: the same difference is {float((moved - kept).abs().max()):.1e}",
    f"(the outputs are {float(kept.abs().mean()):.2f} on average)",
)

rope = MultiHeadAttention(hidden, heads=4, dropout=0.0, rotary=Rotary(hidden // 4))


def rope_score(i, j):  # each head's q . k / sqrt(h): x2 as the query at position i, x4 as the key at j
    with torch.no_grad():
        q, k = rope.query(x[:1, 2:3], torch.tensor([i])), rope.prepare(x[:1, 4:5], torch.tensor([j]))
        return rope.score(q, k).flatten()


print("rotary, (3, 1):    ", rope_score(3, 1).numpy().round(4))
print("rotary, (103, 101):", rope_score(103, 101).numpy().round(4))
print("rotary, (3, 2):    ", rope_score(3, 2).numpy().round(4), "(another offset)")
print(f"rotary: max |(3, 1) - (103, 101)| = {float((rope_score(3, 1) - rope_score(103, 101)).abs().max()):.1e}")

# %% [markdown]
# ## 4. Train a translator with Bahdanau attention
#
# English→French on the Tatoeba pairs (short everyday sentences, the PyTorch tutorial's corpus).
# The defaults train the project's default model for 10 minutes; on two cores it writes
# sensible short sentences after that. `QUICK` (CI) trains a small model for 300 updates.
# The cell shows its progress (a bar where ipywidgets is installed, else a line every
# `train.log_every` updates) and writes the same `train.log` as `python train.py` into the run's
# folder. On a machine busy with other programs, add `"train.threads=1"` to the overrides.

# %%
from seq2seq.overrides import compose  # noqa: E402
from seq2seq.training import train  # noqa: E402

overrides = ["data=tatoeba_eng_fra", f"data.root={CORPORA}", "attention=bahdanau", "train.resume=auto"]
if QUICK:
    overrides += [
        "model.embedding_size=64",
        "model.encoder_size=64",
        "model.decoder_size=128",
        "attention.size=64",
        "data.vocab.size=2000",
        "train.max_steps=300",
        "train.valid_every=150",
        "train.valid_max_sentences=200",
        "train.threads=1",
    ]
else:
    overrides += ["train.max_time=10m", "train.valid_every=500"]
run = OUT / ("quick" if QUICK else "bahdanau")
result = train(compose(overrides), run)
print(f"trained {result['step']} updates; best validation BLEU {result['best/valid_bleu']:.1f}")

# %% [markdown]
# ## 5. Translate the lesson's sentence and look at its attention
#
# Each row of the heatmap is one output piece, each column a source piece: where the decoder
# looked while writing that piece. Expect a sensible pattern, not a dictionary's alignment:
#
# - **The first word often looks at the end of the sentence or at a neighbour.** The decoder's
#   first query is its initial state, made from the encoder's summary of the whole sentence
#   before any word is written, so the first step has no word of its own to look for; the
#   end-of-sentence token `</s>`, whose encoder state also sums the sentence up, often gets it.
# - **Alignments differ between models.** Measured on "The cat sat on the mat.": the command
#   line's English→French model (Multi30k, 2,000 updates) writes "Le chat sur le tapis." with
#   "Le" putting 0.82 of its weight on `</s>`; at 5,000 updates it writes "Le chat est sur le
#   tapis." with "chat" 0.90 on "cat" and "sur" 0.60 on "on" (but "Le" 0.87 on `</s>`); this
#   notebook's 10-minute Tatoeba model put "sur" on "sat" (0.59) and "Le" on "cat" (0.89).
#
# So read the rows of your own model, and compare them with the lines below.

# %%
from seq2seq import Translator  # noqa: E402
from seq2seq.plots import attention_figure  # noqa: E402

translator = Translator.from_checkpoint(run / "best.pt")
sentence = "The cat sat on the mat."
hyp = translator.nbest([sentence], return_attention=True)[0][0]
print(sentence, "->", translator.text(hyp))
src_pieces, out_pieces = translator.labels(sentence, hyp)
figure = attention_figure(hyp.attention.numpy(), src_pieces, out_pieces, title=sentence)
for row, piece in zip(hyp.attention, out_pieces):
    print(f"{piece:>12} looks most at {src_pieces[int(row.argmax())]!r} ({float(row.max()):.0%})")
figure  # noqa: B018 (a notebook shows the heatmap here)

# %% [markdown]
# ## 6. Play it in the explorer
#
# The page is self-contained: open it from disk, press play (or →) and watch each output piece
# appear with lines to where it looks; open "Inside step t" to check softmax(scores) = weights
# on the model's own numbers. `make eval RUN=...` writes the same page for a whole test set, with
# a slider over the training run's validations.

# %%
page = translator.write_page(
    OUT / "lesson.html", [sentence, "I am cold.", "We are going to the beach tomorrow.", "She reads a book."]
)
print("open", page)

# %% [markdown]
# ## 7. Train a Transformer the same way
#
# `model=transformer` swaps the LSTM and its attention for the Transformer encoder-decoder: the
# self-attention above in every layer, causal in the decoder, and the decoder's attention over the
# encoder's output (the lesson's attention once more, with 4 heads). The rest is unchanged: the same
# `train`, the same `Translator`, pictures and explorer page. `QUICK` (CI) trains a tiny one for 200
# updates (about a minute with the data's preparation), which is enough to show the way and not
# enough to translate; the defaults train the project's Transformer for 10 minutes, as the LSTM.
# A Transformer takes no `attention=...` option: its attention is always multi-head scaled dot.

# %%
overrides = ["data=tatoeba_eng_fra", f"data.root={CORPORA}", "model=transformer", "train.resume=auto"]
if QUICK:
    overrides += [
        "model.d_model=64",
        "model.ff_size=256",
        "model.encoder_layers=2",
        "model.decoder_layers=2",
        "data.vocab.size=2000",
        "train.warmup_steps=100",
        "train.max_steps=200",
        "train.valid_every=200",
        "train.valid_max_sentences=200",
        "train.threads=1",
    ]
else:
    overrides += ["train.max_time=10m", "train.valid_every=500"]
transformer_run = OUT / ("quick_transformer" if QUICK else "transformer")
result = train(compose(overrides), transformer_run)
transformer = Translator.from_checkpoint(transformer_run / "best.pt")
print(f"trained {result['step']} updates; best validation BLEU {result['best/valid_bleu']:.1f}")
print(sentence, "->", transformer.translate([sentence])[0])
