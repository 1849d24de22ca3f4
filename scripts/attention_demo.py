"""The attention lesson, runnable: every score function on the same random tensors.

    python scripts/attention_demo.py [--out docs/attention_demo.png]      (make demo [OUT=...])

A random query ``(B, H)`` is compared with keys ``(B, S, H)``; the weights (a softmax over the S
source positions, summing to 1) mix the values ``(B, S, H)`` into a context ``(B, H)``. This uses
the project's own modules from ``seq2seq/model/attention.py``: the same code the trainer runs.
Position 6 of the second example is padding: every score gives it exactly zero weight.
Under each score, the first example's step as the explorer's step panel shows a trained model's:
the raw scores, the softmax written out (w_i = exp(s_i - m) / Z), and the context as the
weighted sum of the values.

Then what the lessons say comes next, with the Transformer's own ``MultiHeadAttention``
(``seq2seq/model/layers.py``): the keys ``(B, S, H)`` as one sequence x that attends to itself
(queries, keys and values all from x, S x S weights), checked against softmax(Q Kᵀ / √d) V and
W_O written out by hand; four heads side by side; the decoder's causal mask; and positions
(without them, shuffling the tokens only shuffles the outputs; rotary scores depend on the offset
alone). Those heatmaps go beside ``--out``: ``*_self.png``, ``*_heads.png``, ``*_causal.png``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from seq2seq.lesson import one_step, panel_lines
from seq2seq.model.attention import build_attention
from seq2seq.model.layers import MultiHeadAttention, Rotary, sinusoidal_table
from seq2seq.plots import attention_figure, close, heads_figure

SCORES = {
    "dot": "q . k  (Luong, multiplicative)",
    "scaled_dot": "q . k / sqrt(d)",
    "general": "q . W k  (Luong)",
    "concat": "v . tanh(W_q q + W_k k)  (Bahdanau, additive)",
}


def side_by_side(rows, seq_len: int):
    """One panel per score function: weights of every example (rows) over source positions."""
    import matplotlib

    matplotlib.use("Agg")  # this script only saves its figure; seq2seq.plots chooses no backend
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 2.4), sharey=True)
    for ax, name, weights in zip(axes, SCORES, rows):
        image = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(seq_len), labels=[f"k{i}" for i in range(seq_len)], fontsize=8)
        ax.set_yticks(range(len(weights)), labels=[f"example {b}" for b in range(len(weights))], fontsize=8)
        ax.set_xlabel("key position")
    fig.colorbar(image, ax=list(axes), fraction=0.02)
    return fig


def multi_head(query, keys, values, mask, hidden: int, heads: int = 4) -> None:
    """The lesson's next step on the same tensors: N heads, each its own slice, scores and softmax."""
    print(f"multi-head (attention.heads={heads}): each head compares its {hidden // heads}-number slice of q and k,")
    print("softmaxes on its own and mixes its share of W_V v; W_O joins the heads' contexts\n")
    for name in ("scaled_dot", "concat"):
        attention = build_attention(name, hidden, hidden, size=hidden, heads=heads)
        with torch.no_grad():
            context, weights = attention(query, keys, values, mask)
            per_head = attention.head_weights(query.unsqueeze(1), keys, mask)[:, :, 0]  # (B, N, S)
        print(f"{name:<11} {heads} heads: context {tuple(context.shape)} = W_O [head_1; ...; head_{heads}]")
        for n in range(heads):
            shown = "  ".join(f"{w:.3f}" for w in per_head[0, n].tolist())
            print(f"  example 0, head {n + 1}: [{shown}]  sums {per_head[0, n].sum():.4f}")
        print(f"  example 0, mean:   [{'  '.join(f'{w:.3f}' for w in weights[0].tolist())}]  (what decoding reads)")
        steps = one_step(attention, query, keys, values, mask)[0]
        keys_shown = [f"k{i}" for i in range(keys.size(1))]
        print("\n".join(panel_lines(name, keys_shown, steps.heads[0], 0, title="example 0, head 1:", head=0)))
        print()


# -- a sequence attends to itself ---------------------------------------------------------------


def attend_to_itself(attention: MultiHeadAttention, x, mask, positions=None):
    """``x (B, S, d)`` gives the queries, the keys and the values: ``(B, S, d)`` out, weights ``(B, N, S, S)``."""
    with torch.no_grad():
        k, v = attention.prepare(x, positions), attention.prepare_values(x)
        return attention(x, k, v, mask, positions=positions, need_weights=True)


def by_hand(attention: MultiHeadAttention, x, mask):
    """The lesson's arithmetic written out: per head softmax(Q_n K_nᵀ / √h) V_n, then W_O [head_1; ...; head_N]."""
    h = attention.head_size
    with torch.no_grad():
        Q = x @ attention.query_layer.weight.T + attention.query_layer.bias  # (B, S, d)
        K = x @ attention.key_layer.weight.T  # W_K has no bias
        V = x @ attention.value_layer.weight.T + attention.value_layer.bias
        heads = []
        for n in range(attention.heads):
            part = slice(n * h, (n + 1) * h)  # head n's slice of every vector
            scores = Q[..., part] @ K[..., part].transpose(1, 2) / math.sqrt(h)  # (B, S, S)
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            heads.append(weights @ V[..., part])  # (B, S, h)
        return torch.cat(heads, -1) @ attention.output_layer.weight.T + attention.output_layer.bias


def matrix_lines(weights) -> list[str]:
    """An S x S block of weights: queries down, keys across, each row's sum at its end."""
    size = weights.size(-1)
    lines = ["       " + "".join(f"{f'k{j}':>7}" for j in range(size))]
    for i, row in enumerate(weights.tolist()):
        lines.append(f"    q{i} " + "".join(f"{w:7.3f}" for w in row) + f"   sum {sum(row):.4f}")
    return lines


def relabel(fig, title: str):
    """Queries down, keys across: a self-attention heatmap's axes."""
    *panels, _colorbar = fig.axes
    for ax in panels:
        ax.set_xlabel("key (x_j)")
    panels[0].set_ylabel("query (x_i)")
    fig.suptitle(title, fontsize=9, y=1.04)  # above the heads' titles; saved with a tight box around it all
    return fig


def self_attention(x, pad_mask, out: Path) -> list[Path]:
    """Self-attention, multi-head, causal, positions: printed, and three heatmaps beside ``out``."""
    batch, size, hidden = x.shape
    mask = pad_mask[:, None, None, :]  # (B, 1, 1, S): a padded position is no key
    labels = [f"x{i}" for i in range(size)]
    pictures = {}
    print("self-attention: a sequence attends to itself. One sequence x (the keys above,")
    print(f"{tuple(x.shape)}) gives the queries W_Q x, the keys W_K x and the values W_V x: every position")
    print("asks every position, itself included, so the weights are S x S, one softmax per row.\n")

    one = MultiHeadAttention(hidden, heads=1, dropout=0.0)  # the Transformer's module, one head
    output, weights = attend_to_itself(one, x, mask)
    print(f"one head: out {tuple(output.shape)}  weights {tuple(weights.shape)} (B, heads, S queries, S keys)")
    print("  example 0:")
    print("\n".join(matrix_lines(weights[0, 0])))
    print(f"  example 0, row sums {[round(s, 4) for s in weights[0, 0].sum(-1).tolist()]}")
    print(f"  example 1, row sums {[round(s, 4) for s in weights[1, 0].sum(-1).tolist()]}")
    print(f"  example 1's padding x{size - 1} gets {weights[1, 0, :, -1].abs().max():.1f} in every row")
    difference = (output - by_hand(one, x, pad_mask[:, None, :])).abs().max()
    assert difference < 1e-6, difference
    print(f"  by hand, softmax(Q Kᵀ / √{hidden}) V then W_O: max |module - by hand| = {difference:.1e} < 1e-6\n")
    pictures["self"] = relabel(
        attention_figure(weights[0, 0].numpy(), labels, labels), "self-attention, one head, example 0"
    )

    heads = 4
    multi = MultiHeadAttention(hidden, heads=heads, dropout=0.0)
    output, weights = attend_to_itself(multi, x, mask)  # weights (B, N, S, S)
    print(f"multi-head ({heads} heads of {hidden // heads} numbers): {heads} patterns in parallel, each its own")
    print("softmax over its own slice of W_Q x and W_K x; W_O joins the heads' contexts")
    for n in range(heads):
        looks = ", ".join(f"k{int(j)}" for j in weights[0, n].argmax(-1))
        sums = weights[0, n].sum(-1)
        print(
            f"  example 0, head {n + 1}: each query looks most at [{looks}]  row sums {sums.min():.4f}..{sums.max():.4f}"
        )
    mean = weights[0].mean(0)
    print(f"  example 0, mean of the heads: [{', '.join(f'k{int(j)}' for j in mean.argmax(-1))}]")
    difference = (output - by_hand(multi, x, pad_mask[:, None, :])).abs().max()
    assert difference < 1e-6, difference
    print(f"  by hand, per head softmax(Q_n K_nᵀ / √{hidden // heads}) V_n, then W_O: max |module - by hand| =")
    print(f"  {difference:.1e} < 1e-6\n")
    pictures["heads"] = relabel(
        heads_figure(weights[0].numpy(), labels, labels), f"self-attention, {heads} heads and their mean, example 0"
    )

    positions = torch.arange(size)
    causal = positions[None, :] <= positions[:, None]  # (S, S): the decoder's mask, a position sees itself and the past
    output, weights = attend_to_itself(multi, x, causal)
    print("causal self-attention (the decoder's): x_i may look at x_j only where j <= i")
    print("\n".join("    " + " ".join(str(int(m)) for m in row) for row in causal))
    print("  a translation is written left to right: when the decoder writes word i, the words after")
    print("  it do not exist yet, so in training (the whole target at once) it must not look at them")
    print("  example 0, head 1:")
    print("\n".join(matrix_lines(weights[0, 0])))
    above = weights.triu(diagonal=1)  # (B, N, S, S): above the diagonal, the future
    print(f"  above the diagonal: max weight {above.abs().max():.1f} in every example and head (exactly 0)")
    later = x.clone()
    later[:, 3:] = torch.randn_like(later[:, 3:])  # other words at positions 3, 4, 5
    changed = (attend_to_itself(multi, later, causal)[0] - output)[:, :3].abs().max()
    print(f"  other words at x3..x5: outputs at x0..x2 change by {changed:.1e}\n")
    pictures["causal"] = relabel(
        heads_figure(weights[0].numpy(), labels, labels), f"causal self-attention, {heads} heads, example 0"
    )

    everything = torch.ones(batch, 1, 1, size, dtype=torch.bool)
    order = [3, 0, 5, 1, 4, 2]
    shuffled = attend_to_itself(multi, x[:, order], everything)[0]
    equivariant = (shuffled - attend_to_itself(multi, x, everything)[0][:, order]).abs().max()
    print("positions: nothing above knows where a word stands. Shuffle the words (order")
    print(f"{order}) and the outputs shuffle the same way, permutation-equivariant:")
    print(f"  max |attend(x shuffled) - attend(x) shuffled| = {equivariant:.1e}")
    table = sinusoidal_table(positions, hidden)  # (S, d): PE(p, 2i) = sin(p / 10000^(2i/d)), cos for 2i+1
    moved = attend_to_itself(multi, x[:, order] + table, everything)[0]
    kept = attend_to_itself(multi, x + table, everything)[0][:, order]
    print(f"  with sinusoidal positions added (x + PE): the same check gives {(moved - kept).abs().max():.1e}")
    print(f"  (the outputs are {kept.abs().mean():.2f} on average): a word's output now depends on where it stands")
    rope = MultiHeadAttention(hidden, heads=heads, dropout=0.0, rotary=Rotary(hidden // heads))
    word_i, word_j = x[:1, 2:3], x[:1, 4:5]  # (1, 1, d): one word as the query, another as the key

    def score(i: int, j: int):  # each head's q . k / sqrt(h), the query rotated to position i, the key to j
        with torch.no_grad():
            q, k = rope.query(word_i, torch.tensor([i])), rope.prepare(word_j, torch.tensor([j]))
            return rope.score(q, k).flatten()  # (N,)

    near, far, other = score(3, 1), score(103, 101), score(3, 2)
    print("  rotary positions turn q and k by their positions, so q . k depends on the offset i - j alone:")
    print(f"    x2 at 3, x4 at 1:     {' '.join(f'{s:7.4f}' for s in near)}  (each head)")
    print(
        f"    x2 at 103, x4 at 101: {' '.join(f'{s:7.4f}' for s in far)}  max difference {(near - far).abs().max():.1e}"
    )
    print(f"    x2 at 3, x4 at 2:     {' '.join(f'{s:7.4f}' for s in other)}  (another offset, other scores)\n")

    written = []
    for name, fig in pictures.items():
        path = out.with_name(f"{out.stem}_{name}{out.suffix}")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        close(fig)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/attention_demo.png", help="where to save the heatmaps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    batch, seq_len, hidden = 2, 6, 16
    query = torch.randn(batch, hidden)  # (B, H): one decoder state per example
    keys = torch.randn(batch, seq_len, hidden)  # (B, S, H): one encoder state per source position
    values = keys  # in the trainer the encoder states are both keys and values
    mask = torch.ones(batch, seq_len, dtype=torch.bool)
    mask[1, -1] = False  # the second example is one token shorter: its last position is padding
    print(f"query {tuple(query.shape)}  keys {tuple(keys.shape)}  values {tuple(values.shape)}\n")

    rows = []
    for name, formula in SCORES.items():
        attention = build_attention(name, hidden, hidden, size=hidden)
        with torch.no_grad():
            context, weights = attention(query, keys, values, mask)
        entropy = -(weights.clamp_min(1e-12).log() * weights).sum(-1)
        print(f"{name:<11} {formula}")
        print(
            f"  context {tuple(context.shape)}  weights {tuple(weights.shape)}  sums {[round(s, 4) for s in weights.sum(-1).tolist()]}"
        )
        for b in range(batch):
            shown = "  ".join(f"{w:.3f}" for w in weights[b].tolist())
            print(f"  example {b}: [{shown}]  entropy {entropy[b]:.2f}")
        rows.append(weights.numpy())
        # the explorer's step panel, here on random numbers: query, scores, softmax, context
        steps = one_step(attention, query, keys, values, mask)[0]
        keys_shown = [f"k{i}" for i in range(seq_len)]
        print(
            "\n".join(
                panel_lines(name, keys_shown, steps, 0, title="example 0, as the explorer's step panel shows it:")
            )
        )
        print()

    multi_head(query, keys, values, mask, hidden)
    print("Dot products grow with the dimension, so unscaled scores give peakier weights (lower entropy);")
    print("dividing by sqrt(d) keeps the softmax soft. The learned scores (general, concat) start random.\n")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    beside = self_attention(keys, mask, out)  # what comes next: the keys attend to themselves
    fig = side_by_side(rows, seq_len)
    fig.savefig(out, dpi=120)
    close(fig)
    print(f"self-attention's heatmaps: {', '.join(p.name for p in beside)}, beside the first")
    print(f"wrote the heatmap to {out.resolve()} (--out FILE, or make demo OUT=FILE, to write it elsewhere)")


if __name__ == "__main__":
    main()
