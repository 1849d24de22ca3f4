"""Validation: teacher-forced loss and attention statistics, greedy BLEU/chrF, samples and heatmaps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from seq2seq.attention_rows import module_fields
from seq2seq.config import TrainConfig
from seq2seq.data.batching import collate, token_batches
from seq2seq.data.prepare import Split
from seq2seq.data.vocab import Vocab
from seq2seq.explorer import sparse_rows
from seq2seq.hardware import autocast
from seq2seq.history import append as append_history
from seq2seq.history import panel_fields
from seq2seq.lesson import Steps, steps_taken
from seq2seq.lesson_layers import last_cross, replay
from seq2seq.metrics import attention_statistics, corpus_scores
from seq2seq.model import Seq2Seq
from seq2seq.plots import attention_figure, heads_figure
from seq2seq.search import Search, decode_corpus
from seq2seq.tracking import Tracker
from seq2seq.training.faults import crash_point
from seq2seq.training.loss import generator_loss


@torch.inference_mode()
def validate(
    model: Seq2Seq, data: Split, vocab: Vocab, device: torch.device, precision: str, tc: TrainConfig
) -> dict[str, Any]:
    """Loss/perplexity (teacher forcing), attention entropy and diagonality, greedy BLEU/chrF on ``data``."""
    model.eval()
    nll_total, tokens = 0.0, 0
    entropy = distance = rows = 0  # attention statistics over the reference (teacher forcing)
    heads = n_heads(model)
    per_head = torch.zeros(heads, 2, dtype=torch.float64)  # each head's (entropy, distance) sums, heads > 1
    lens_src = [len(s) for s in data.src_ids]
    lens_tgt = [len(t) for t in data.tgt_ids]
    for index in token_batches(lens_src, lens_tgt, tc.batch_tokens * 2, multiple=tc.pad_to_multiple):
        src, tgt = [data.src_ids[i] for i in index], [data.tgt_ids[i] for i in index]
        batch = collate(src, tgt, tc.pad_to_multiple).to(device)
        recording = model.recording_heads()
        with autocast(precision, device), recording as calls:  # chunked like training: no (B, T, V) logits
            features, attention = model.features(batch.src, batch.src_lens, batch.tgt_in)
            nll_total += float(generator_loss(features, model.generator, batch.tgt_out)[1])
        if attention is not None:
            out_lens = torch.tensor([len(t) + 1 for t in tgt])  # + EOS
            e, d, n = attention_statistics(attention, batch.src_lens, out_lens)
            entropy, distance, rows = entropy + e, distance + d, rows + n
            if calls:
                every = torch.cat(calls, 2)  # (B, N, T, S): the step loop's calls, or one call of all steps
                for h in range(heads):
                    per_head[h] += torch.tensor(attention_statistics(every[:, h], batch.src_lens, out_lens)[:2])
        tokens += batch.n_tokens
    crash_point("validation")  # tests: killed between the loss pass and decoding
    search = Search(max_ratio=tc.max_output_ratio, batch_size=tc.valid_batch_size, precision=precision)
    hyps = decode_corpus(model, data.src_ids, device, search)
    texts = [vocab.decode_tgt(h.tokens) for h in hyps]
    attention_figures = {"attention_entropy": entropy / rows, "attention_diagonal": distance / rows} if rows else {}
    if rows and heads > 1:  # each head's own figures: the heads of one model may look very differently
        attention_figures["attention_entropy_heads"] = (per_head[:, 0] / rows).tolist()
        attention_figures["attention_diagonal_heads"] = (per_head[:, 1] / rows).tolist()
    return {
        "loss": nll_total / tokens,
        "ppl": math.exp(min(nll_total / tokens, 50.0)),
        **corpus_scores(texts, data.tgt_texts),
        **attention_figures,
        "hypotheses": texts,
    }


def log_examples(
    tracker: Tracker,
    model: Seq2Seq,
    data: Split,
    vocab: Vocab,
    setting: tuple[torch.device, str, TrainConfig],
    hypotheses: list[str],
    step: int,
    history: Path | None = None,
) -> None:
    """Sample translations as text, and labelled attention heatmaps for the first validation sentences.

    With ``history`` (a run dir) the same sentences' outputs and attention are appended to its
    :data:`~seq2seq.history.HISTORY_FILE`, for the explorer's training-step slider.
    """
    device, precision, tc = setting
    lines = []
    for i in range(min(tc.n_samples, len(hypotheses))):
        lines.append(
            f"**source:** {data.src_texts[i]}  \n**reference:** {data.tgt_texts[i]}  \n**output:** {hypotheses[i]}"
        )
    tracker.text("valid/samples", "\n\n".join(lines), step)
    if not model.has_attention or tc.n_heatmaps == 0:
        return
    src_ids = data.src_ids[: tc.n_heatmaps]
    search = Search(max_ratio=tc.max_output_ratio, batch_size=len(src_ids), precision=precision, return_attention=True)
    hyps = decode_corpus(model, src_ids, device, search)
    # the decoder replayed over what it wrote (seq2seq.lesson): every score for the step panel, each head's weights
    replayed, layered = replay(model, src_ids, [steps_taken(h) for h in hyps])
    entry = []
    for i, (ids, hyp) in enumerate(zip(src_ids, hyps)):
        src_labels = vocab.src_pieces(ids) + ["</s>"]
        out_labels = (vocab.tgt_pieces(hyp.tokens) + ["</s>"])[: hyp.attention.size(0)]
        title = f"valid sentence {i}, step {step}"
        fig = attention_figure(hyp.attention.numpy(), src_labels, out_labels, title=title)
        tracker.figure(f"attention/{i}", fig, step)
        sentence = {
            "src": data.src_texts[i],
            "sp": src_labels,
            "hyp": vocab.decode_tgt(hyp.tokens),
            "op": out_labels,
            "att": sparse_rows(hyp.attention),
        }
        heads = replayed[i].heads if replayed is not None and replayed[i] is not None else None
        if heads:
            weights = [h.weights.numpy() for h in heads]
            tracker.figure(f"attention_heads/{i}", heads_figure(weights, src_labels, out_labels, title=title), step)
            sentence["heads"] = [sparse_rows(w) for w in weights]
        if layered:  # a Transformer: every layer's attention, cross and self (seq2seq.lesson_layers)
            labels = (src_labels, out_labels)
            sentence["modules"] = layer_pictures(tracker, layered[i], last_cross(model), labels, title, (i, step))
        entry.append({**sentence, **panel_fields(replayed[i])})
    if history is not None:
        append_history(history, step, entry)


def layer_pictures(
    tracker: Tracker,
    modules: dict[str, Steps],
    reported: str,
    labels: tuple[list[str], list[str]],
    title: str,
    at: tuple[int, int],
) -> dict[str, Any]:
    """A Transformer sentence's TensorBoard heatmaps, each head and their mean, for every encoder-decoder
    attention but ``reported`` (``attention_heads/<i>`` draws that one: ``attention_layers/decoder.<l>.cross/<i>``)
    and the encoder's self-attention (``attention_layers/encoder.<l>.self/<i>``, the source over itself);
    returns the other modules' records for the history (:func:`seq2seq.attention_rows.module_fields`)."""
    src_labels, out_labels = labels
    sentence, step = at
    for name, steps in modules.items():
        if name == reported or (name.endswith(".self") and name.startswith("decoder")):
            continue  # drawn as attention_heads/<i>; the output over its own past: in the history only
        rows = src_labels if name.startswith("encoder") else out_labels
        weights = [h.weights.numpy() for h in steps.heads]
        fig = heads_figure(weights, src_labels, rows, title=f"{title}, {name}")
        tracker.figure(f"attention_layers/{name}/{sentence}", fig, step)
    return module_fields(modules, reported=reported)


def n_heads(model: Seq2Seq) -> int:
    """The model's attention heads (1 for one head and for ``attention=none``)."""
    return model.heads


def scalars(result: dict[str, Any]) -> dict[str, float]:
    """What TensorBoard gets of a validation: ``valid/loss``, ``valid/bleu``, ... (attention figures where
    they exist; with heads also ``valid/attention_entropy/head_1``, ... per head)."""
    keys = ("loss", "ppl", "bleu", "chrf", "attention_entropy", "attention_diagonal")
    out = {f"valid/{key}": result[key] for key in keys if key in result}
    for key in ("attention_entropy", "attention_diagonal"):
        for h, value in enumerate(result.get(f"{key}_heads", [])):
            out[f"valid/{key}/head_{h + 1}"] = value
    return out


def summary_line(step: int, result: dict[str, Any], improved: bool, seconds: float) -> str:
    """``step 250 | valid loss 3.101 ppl 22.21 | BLEU 30.12 chrF 55.40 (best) | 12.3s | nrefs:1|case:mixed|...``."""
    best = " (best)" if improved else ""
    return (
        f"step {step} | valid loss {result['loss']:.3f} ppl {result['ppl']:.2f} | BLEU {result['bleu']:.2f} "
        f"chrF {result['chrf']:.2f}{best} | {seconds:.1f}s | {result['bleu_signature']}"
    )
