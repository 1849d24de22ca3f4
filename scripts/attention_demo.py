"""The attention lesson, runnable: every score function on the same random tensors.

    python scripts/attention_demo.py [--out docs/attention_demo.png]      (make demo [OUT=...])

A random query ``(B, H)`` is compared with keys ``(B, S, H)``; the weights (a softmax over the S
source positions, summing to 1) mix the values ``(B, S, H)`` into a context ``(B, H)``. This uses
the project's own modules from ``seq2seq/model/attention.py``: the same code the trainer runs.
Position 6 of the second example is padding: every score gives it exactly zero weight.
Under each score, the first example's step as the explorer's step panel shows a trained model's:
the raw scores, the softmax written out (w_i = exp(s_i - m) / Z), and the context as the
weighted sum of the values.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from seq2seq.lesson import one_step, panel_lines
from seq2seq.model.attention import build_attention  # noqa: E402
from seq2seq.plots import close  # noqa: E402

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

    fig = side_by_side(rows, seq_len)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    close(fig)
    print("Dot products grow with the dimension, so unscaled scores give peakier weights (lower entropy);")
    print("dividing by sqrt(d) keeps the softmax soft. The learned scores (general, concat) start random.")
    print(f"wrote the heatmap to {out.resolve()} (--out FILE, or make demo OUT=FILE, to write it elsewhere)")


if __name__ == "__main__":
    main()
