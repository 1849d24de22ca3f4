"""The lesson's arithmetic on a model's own numbers: query, scores, softmax, context, step by step.

The lessons this trainer serves compute attention on random tensors::

    scores  = score(q, k_i)                 for every source position i
    weights = softmax(scores)               w_i = exp(s_i - m) / sum_j exp(s_j - m),  m = max_j s_j
    context = sum_i w_i v_i                 the values mixed by the weights

:func:`attention_steps` replays a trained model's decoder over an output it wrote (the tokens of
a greedy or beam hypothesis, teacher-forced, dropout off, float32) and keeps, at every step, what
that arithmetic needs: the raw score of each source position (the model's own
:meth:`~seq2seq.model.attention.Attention.score`, read by a forward hook on its attention module,
so nothing in the model changes), the weights, the norms of the query and of the context, and the
norm of each value (encoder state). The explorer's step panel and ``make demo`` print the same
picture (:func:`panel_lines`).

Which vector is the query (:data:`QUERIES`): Bahdanau attends with the previous decoder state
s_{t-1} before the LSTM step; Luong with the new state s_t after it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.data.batching import source_tensor
from seq2seq.data.vocab import BOS, EOS
from seq2seq.model import Seq2Seq

FORMULAS = {
    "dot": "score(q, k) = qᵀk",
    "scaled_dot": "score(q, k) = qᵀk / √d",
    "general": "score(q, k) = qᵀ W k",
    "concat": "score(q, k) = vᵀ tanh(W_q q + W_k k)",
}
HEAD_FORMULAS = {  # head n of N (attention.heads): its slice of what the score compares, its own softmax
    "dot": "score_n(q, k) = q_nᵀ k_n",
    "scaled_dot": "score_n(q, k) = q_nᵀ k_n / √d,  d = a head's size",
    "general": "score_n(q, k) = q_nᵀ (W k)_n",
    "concat": "score_n(q, k) = v_nᵀ tanh((W_q q)_n + (W_k k)_n)",
}
HEAD_VALUES = "v_i here is head n's share of W_V k_i, and the head's context is W_O's n-th input"
QUERIES = {
    "bahdanau": "the previous decoder state s_{t-1} (attend, then update the LSTM)",
    "luong": "the new decoder state s_t (update the LSTM, then attend)",
    "transformer": "the output position's state in this layer, after its self-attention over the output so far, "
    "through W_Q (the keys and values: the encoder's output through W_K and W_V)",
}


@dataclass
class Steps:
    """One sentence's attention, step by step; ``T`` output steps (EOS included), ``S`` real source positions."""

    scores: Tensor  # (T, S) raw scores
    weights: Tensor  # (T, S) softmax of each row
    query_norm: Tensor  # (T,) ‖q_t‖
    context_norm: Tensor  # (T,) ‖c_t‖ = ‖Σ_i w_i v_i‖
    value_norm: Tensor  # (S,) ‖v_i‖ (the encoder states are both keys and values)
    # multi-head attention (attention.heads > 1): each head's own steps; then ``weights`` is their mean
    # and ``scores`` its log (a softmax of it gives the mean back: the heads have no common score)
    heads: list[Steps] | None = None


def _recorder(calls: list[dict[str, Tensor]]):
    """A forward hook for an attention module: keeps each call's query, masked raw scores, weights, context,
    and with heads each head's scores ``(B, N, S)``, context norm ``(B, N)`` and value norms ``(B, N, S)``."""

    def hook(module, args, kwargs, output):
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        query, keys, values, mask = (bound.arguments[k] for k in ("query", "keys", "values", "mask"))
        keys_proj = bound.arguments.get("keys_proj")
        if keys_proj is None:
            keys_proj = module.prepare(keys)
        q = query if query.dim() == 3 else query.unsqueeze(1)  # (B, 1, H)
        context, weights = output
        call = {
            "query": q[:, -1].float(),
            "weights": (weights if weights.dim() == 2 else weights[:, -1]).float(),
            "context": (context if context.dim() == 2 else context[:, -1]).float(),
        }
        scores = module.score(q, keys_proj)  # the module's own score function: (B, T, S), or (B, N, T, S)
        if module.heads == 1:
            call["scores"] = scores[:, -1].float().masked_fill(~mask, float("-inf"))  # (B, S)
        else:
            values_proj = module.prepare_values(values).float()  # (B, N, S, V/N)
            head_scores = scores[:, :, -1].float().masked_fill(~mask[:, None], float("-inf"))  # (B, N, S)
            head_weights = head_scores.softmax(-1)
            call["head_scores"], call["head_weights"] = head_scores, head_weights
            call["head_context"] = torch.einsum("bns,bnsv->bnv", head_weights, values_proj).norm(dim=-1)
            call["head_values"] = values_proj.norm(dim=-1)
        calls.append(call)

    return hook


def _heads(stacked: dict[str, Tensor], row: int, T: int, S: int, query_norm: Tensor) -> list[Steps] | None:
    """Sentence ``row``'s heads as one :class:`Steps` each (``stacked``: the recorder's calls over the steps)."""
    if "head_scores" not in stacked:
        return None
    return [
        Steps(
            scores=stacked["head_scores"][row, :T, n, :S],
            weights=stacked["head_weights"][row, :T, n, :S],
            query_norm=query_norm,
            context_norm=stacked["head_context"][row, :T, n],
            value_norm=stacked["head_values"][row, 0, n, :S],
        )
        for n in range(stacked["head_scores"].size(2))
    ]


def steps_taken(hyp) -> list[int]:
    """The tokens a hypothesis (:class:`~seq2seq.search.Hypothesis`) was written with, one per step:
    its ids, then EOS where it ended with one: what :func:`attention_steps` replays."""
    steps = hyp.attention.size(0) if hyp.attention is not None else len(hyp.tokens) + 1
    return (list(hyp.tokens) + [EOS])[:steps]


@torch.inference_mode()
def attention_steps(
    model: Seq2Seq, src_ids: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]], batch_size: int = 64
) -> list[Steps | None]:
    """For each source (ids without EOS) and the output the model wrote for it (``steps`` tokens:
    the hypothesis' ids, EOS appended where it ended with one), the attention of every step.

    None for every sentence of a model without attention.
    """
    if model.decoder.attention is None:
        return [None] * len(src_ids)
    model.eval()
    device = next(model.parameters()).device
    out: list[Steps | None] = []
    for start in range(0, len(src_ids), batch_size):
        src_b, out_b = src_ids[start : start + batch_size], outputs[start : start + batch_size]
        src, src_lens = source_tensor(src_b)
        src = src.to(device)
        calls: list[dict[str, Tensor]] = []
        handle = model.decoder.attention.register_forward_hook(_recorder(calls), with_kwargs=True)
        try:
            with torch.autocast(device.type, enabled=False):
                memory = model.encode(src, src_lens.to(device))
                state = model.decoder.init_state(memory)
                width = max((len(o) for o in out_b), default=0)
                tokens = torch.full((len(out_b), width + 1), BOS, dtype=torch.long)  # BOS, then the output
                for row, seq in enumerate(out_b):
                    tokens[row, 1 : len(seq) + 1] = torch.tensor(list(seq), dtype=torch.long)
                tokens = tokens.to(device)
                for t in range(width):
                    _, state, _ = model.decoder.step(tokens[:, t], state, memory)
        finally:
            handle.remove()
        value_norm = memory.states.float().norm(dim=-1).cpu()  # (B, S)
        # each recorded tensor, stacked over the steps: (B, width, S) scores and weights, (B, width, .) vectors
        stacked = {key: torch.stack([c[key] for c in calls], 1).cpu() for key in calls[0]} if calls else None
        for row, seq in enumerate(out_b):
            T, S = len(seq), int(src_lens[row])
            if stacked is None:  # every output of the batch is empty
                empty = torch.zeros(0, S)
                out.append(
                    Steps(empty, empty, torch.zeros(0), torch.zeros(0), value_norm[row, :S])
                )  # heads: none to show
                continue
            query_norm = stacked["query"][row, :T].norm(dim=-1)
            heads = _heads(stacked, row, T, S, query_norm)
            out.append(
                Steps(
                    scores=stacked["scores"][row, :T, :S] if heads is None else _mean_scores(heads),
                    weights=stacked["weights"][row, :T, :S],
                    query_norm=query_norm,
                    context_norm=stacked["context"][row, :T].norm(dim=-1),
                    value_norm=value_norm[row, :S],
                    heads=heads,
                )
            )
    return out


def _mean_scores(heads: list[Steps]) -> Tensor:
    """Scores whose softmax is the mean over heads' weights (its log): what one-head readers of
    ``Steps.scores`` (the explorer's storage) need to reproduce the weights."""
    return torch.stack([h.weights for h in heads]).mean(0).log()


@torch.inference_mode()
def one_step(attention, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> list[Steps]:
    """The lesson's single attention call ``attention(query (B, H), keys, values (B, S, .), mask (B, S))``
    as one :class:`Steps` per example (one step each), read the way :func:`attention_steps` reads a model."""
    calls: list[dict[str, Tensor]] = []
    handle = attention.register_forward_hook(_recorder(calls), with_kwargs=True)
    try:
        attention(query, keys, values, mask)
    finally:
        handle.remove()
    (call,) = calls
    stacked = {key: value.unsqueeze(1) for key, value in call.items()}  # one step: (B, 1, ...), as over steps
    value_norm = values.float().norm(dim=-1)  # (B, S)
    out = []
    for b in range(query.size(0)):
        S = int(mask[b].sum())
        query_norm = call["query"][b : b + 1].norm(dim=-1)
        heads = _heads(stacked, b, 1, S, query_norm)
        out.append(
            Steps(
                scores=call["scores"][b : b + 1, :S] if heads is None else _mean_scores(heads),
                weights=call["weights"][b : b + 1, :S],
                query_norm=query_norm,
                context_norm=call["context"][b : b + 1].norm(dim=-1),
                value_norm=value_norm[b, :S],
                heads=heads,
            )
        )
    return out


def panel_lines(
    score: str,
    source: Sequence[str],
    steps: Steps,
    t: int,
    wiring: str | None = None,
    title: str | None = None,
    head: int | None = None,
) -> list[str]:
    """Step ``t`` as text, the explorer's step panel: query, formula, scores, softmax, context.

    ``head``: ``steps`` are head ``head`` (0-based) of a multi-head module (``Steps.heads``)."""
    s, w = steps.scores[t], steps.weights[t]
    m = float(s.max())
    shifted = (s - m).exp()
    z = float(shifted.sum())
    lines = [title or f"step {t}"]
    if wiring in QUERIES:
        lines.append(f"  query q = {QUERIES[wiring]}, ‖q‖ = {float(steps.query_norm[t]):.3f}")
    else:
        lines.append(f"  query q, ‖q‖ = {float(steps.query_norm[t]):.3f}")
    lines.append(f"  {FORMULAS[score]}" if head is None else f"  head {head + 1}: {HEAD_FORMULAS[score]}")
    if head is not None:
        lines.append(f"  ({HEAD_VALUES})")
    lines.append(f"  softmax: w_i = exp(s_i - m) / Z,  m = max s = {m:.3f},  Z = Σ exp(s_j - m) = {z:.4f}")
    lines.append(
        f"  {'i':>3}  {'key':<12} {'score s_i':>10} {'exp(s_i-m)':>11} {'w_i':>7} {'‖v_i‖':>7} {'w_i·‖v_i‖':>10}"
    )
    for i, label in enumerate(source):
        share = float(w[i] * steps.value_norm[i])
        lines.append(
            f"  {i:>3}  {label[:12]:<12} {float(s[i]):>10.3f} {float(shifted[i]):>11.4f} {float(w[i]):>7.4f} "
            f"{float(steps.value_norm[i]):>7.3f} {share:>10.3f}"
        )
    c, share = f"{float(steps.context_norm[t]):.3f}", f"{float((w * steps.value_norm).sum()):.3f}"
    relation = "≤" if float(c) <= float(share) else "≈"  # ‖c‖ ≤ Σ w_i·‖v_i‖; float32 may tip a tie the other way
    lines.append(
        f"  context c = Σ_i w_i v_i: ‖c‖ = {c} {relation} Σ_i w_i·‖v_i‖ = {share};  Σ w_i = {float(w.sum()):.4f}"
    )
    return lines
