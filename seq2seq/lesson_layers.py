"""The lesson's arithmetic in every attention module of a Transformer: each layer, each head, self and cross.

:func:`module_steps` replays a Transformer over an output it wrote (teacher-forced, dropout off,
float32) with every attention module recorded (:func:`seq2seq.model.transformer.recording`) and
gives, per sentence, one :class:`~seq2seq.lesson.Steps` per module, named as
:meth:`~seq2seq.model.transformer.Transformer.attention_modules` names them:

- ``decoder.<l>.cross``: the output steps (T) over the source positions (S), as an LSTM's attention;
- ``encoder.<l>.self``: the source over itself (S x S), "a sequence attends to itself";
- ``decoder.<l>.self``: the output over its own past (T x T; the future gets exactly 0).

Each module's :class:`Steps` has one :class:`Steps` per head in ``heads``: head n's raw scores
``q_n . k_n / sqrt(h)`` (plus the relative bias where the model has one), its softmax, ``‖q_n‖``, its
values ``‖v_n,j‖`` (``W_V``'s slice) and its context ``‖Σ_j w_j v_n,j‖``. The module's own
``weights`` are the heads' mean, its ``scores`` their log (whose softmax is that mean), its query
the whole ``W_Q x``, its context ``W_O [head_1; ...; head_N]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from seq2seq.data.batching import source_tensor
from seq2seq.data.vocab import BOS
from seq2seq.lesson import Steps, attention_steps
from seq2seq.model import Seq2Seq
from seq2seq.model.transformer import Transformer, recording


def _module(call: dict[str, Tensor], output_layer, row: int, T: int, S: int) -> Steps:
    """One sentence's :class:`Steps` of one module from its recorded call (``T`` query rows, ``S`` key columns)."""
    scores, weights = call["scores"][row, :, :T, :S].float(), call["weights"][row, :, :T, :S].float()  # (N, T, S)
    query, values = call["query"][row, :, :T].float(), call["values"][row, :, :S].float()  # (N, T, h), (N, S, h)
    contexts = torch.matmul(weights, values)  # (N, T, h)
    heads = [
        Steps(scores[n], weights[n], query[n].norm(dim=-1), contexts[n].norm(dim=-1), values[n].norm(dim=-1))
        for n in range(scores.size(0))
    ]
    mean = weights.mean(0)  # (T, S)
    output = output_layer(contexts.transpose(0, 1).flatten(1))  # W_O [head_1; ...; head_N]: (T, d)
    return Steps(
        scores=mean.clamp(min=1e-30).log(),
        weights=mean,
        query_norm=query.transpose(0, 1).flatten(1).norm(dim=-1),
        context_norm=output.norm(dim=-1),
        value_norm=values.transpose(0, 1).flatten(1).norm(dim=-1),
        heads=heads,
    )


@torch.inference_mode()
def module_steps(
    model: Transformer,
    src_ids: Sequence[Sequence[int]],
    outputs: Sequence[Sequence[int]],
    batch_size: int = 32,
    every_module: int | None = None,
) -> list[dict[str, Steps]]:
    """For each source (ids without EOS) and the output written for it (its ids, EOS appended where it
    ended with one), every attention module's :class:`Steps`, by module name; with ``every_module``,
    only the first that many sentences get every module, the rest the one decoding reports (:func:`last_cross`)."""
    model.eval()
    device = next(model.parameters()).device
    modules = model.attention_modules()
    reported = last_cross(model)
    every = len(src_ids) if every_module is None else every_module
    out: list[dict[str, Steps]] = []
    for start in range(0, len(src_ids), batch_size):
        src_b, out_b = src_ids[start : start + batch_size], outputs[start : start + batch_size]
        src, src_lens = source_tensor(src_b)
        width = max((len(o) for o in out_b), default=0)
        tgt_in = torch.full((len(out_b), max(width, 1)), BOS, dtype=torch.long)  # BOS, then the output but its last
        for row, seq in enumerate(out_b):
            tgt_in[row, 1 : len(seq)] = torch.tensor(list(seq)[:-1], dtype=torch.long)
        with torch.autocast(device.type, enabled=False), recording(model) as calls:
            model(src.to(device), src_lens.to(device), tgt_in.to(device))
        for row, seq in enumerate(out_b):
            T, S = len(seq), int(src_lens[row])
            sizes = {"cross": (T, S), "self": (T, T)}
            entry = {}
            for name, (call,) in calls.items():
                if start + row >= every and name != reported:
                    continue
                rows, cols = (S, S) if name.startswith("encoder") else sizes[name.rsplit(".", 1)[1]]
                entry[name] = _module(call, modules[name].output_layer, row, rows, cols)
            out.append(entry)
    return out


def last_cross(model: Transformer) -> str:
    """The module whose weights decoding reports: the last decoder layer's encoder-decoder attention."""
    return f"decoder.{len(model.decoder.layers) - 1}.cross"


def replay(
    model: Seq2Seq | Transformer,
    src_ids: Sequence[Sequence[int]],
    outputs: Sequence[Sequence[int]],
    every_module: int | None = None,
) -> tuple[list[Steps | None], list[dict[str, Steps]] | None]:
    """The attention decoding reports, replayed step by step, for either family: an LSTM's attention
    (:func:`seq2seq.lesson.attention_steps`) or a Transformer's last encoder-decoder attention; and for
    a Transformer every module's (:func:`module_steps`; for the first ``every_module`` sentences only,
    when given: the others' entries hold the reported module alone), else None."""
    if isinstance(model, Transformer):
        layered = module_steps(model, src_ids, outputs, every_module=every_module)
        return [modules[last_cross(model)] for modules in layered], layered
    return attention_steps(model, src_ids, outputs), None
