# %% [markdown]
# # Attention, from the lesson to a translator you trained
#
# The lesson computes attention on random tensors: a query is compared with every key, the scores
# go through a softmax, and the weights mix the values into a context vector. This notebook runs
# that code, then the same computation with this trainer's own attention modules, then trains a
# small English→French translator on a CPU for a few minutes (the Tatoeba pairs of the PyTorch
# tutorial), translates a sentence of the lesson's kind, draws where each output word looked, and
# writes the explorer page where you can play the translation step by step.
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
# ## 3. Train a translator with Bahdanau attention
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
# ## 4. Translate the lesson's sentence and look at its attention
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
# ## 5. Play it in the explorer
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
