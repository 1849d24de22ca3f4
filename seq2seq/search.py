"""Decoding: batched greedy search and batched beam search on one per-step API.

Both run ``model.encode`` once, then call ``model.step_logits(y_prev, state, memory)`` for one
output position at a time. Decoding stops for each sentence at EOS or after ``max_len`` tokens,
a limit that scales with the source (:func:`max_output_lengths`), so long sentences are not cut
short by a fixed cap. Finished sentences drop out of the batch, so the work shrinks as the batch
finishes.

Beam search keeps ``K`` live prefixes per sentence as ``B * K`` rows, sentence-major::

    row = b * K + k        memory, state: (B*K, ...)     scores: (B, K)     tokens: (B*K, t)

and ranks finished hypotheses with the GNMT length penalty (Wu et al. 2016, Eq. 14):
``score(Y) = log P(Y | X) / lp(Y)`` with ``lp(Y) = ((5 + |Y|) / 6) ** alpha``, where ``|Y|``
counts every scored step (EOS included). ``alpha = 0`` ranks by log-probability alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.data.batching import source_tensor
from seq2seq.data.vocab import BOS, EOS
from seq2seq.hardware import autocast
from seq2seq.model import Seq2Seq
from seq2seq.model.decoder import State
from seq2seq.model.encoder import Memory


@dataclass
class Hypothesis:
    tokens: list[int]  # model ids, EOS excluded
    score: float  # the ranking score: logprob / lp(len) in beam search, logprob in greedy search
    logprob: float  # sum of log-probabilities of every scored step, EOS included
    attention: Tensor | None = None  # (steps, S): one row per output step (the EOS row last), real source only


def max_output_lengths(src_lens: Tensor, ratio: float, extra: int = 10) -> Tensor:
    """Per-sentence output limit: ``ratio * source length + extra``."""
    return (src_lens.float() * ratio).long() + extra


def gnmt_length_penalty(length: Tensor | int, alpha: float) -> Tensor | float:
    """GNMT length penalty ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016, Eq. 14); 1 when ``alpha = 0``."""
    return ((5 + length) / 6) ** alpha


# -- greedy ----------------------------------------------------------------------------------


COMPACT_EVERY = 4  # greedy search drops finished rows once they are a quarter of its batch


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq, src: Tensor, src_lens: Tensor, max_lens: Tensor, return_attention: bool = False
) -> list[Hypothesis]:
    """Greedy decoding of a padded batch ``src (B, S)``; one :class:`Hypothesis` per row, in order."""
    batch = src.size(0)
    memory = model.encode(src, src_lens)
    state = model.init_state(memory)
    y = torch.full((batch,), BOS, dtype=torch.long, device=src.device)
    alive = torch.arange(batch, device=src.device)  # original row of each row of the decoding batch
    live = torch.ones(batch, dtype=torch.bool, device=src.device)  # rows not finished yet
    limits = max_lens.to(src.device)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    scores = torch.zeros(batch, device=src.device)
    rows: list[list[Tensor]] = [[] for _ in range(batch)]
    for t in range(int(limits.max())):
        logp, state, weights = model.step_logits(y, state, memory)  # (b, V)
        best, y = logp.max(-1)  # (b,), (b,)
        scores.index_add_(0, alive, best * live)
        for j, (row, token, going) in enumerate(zip(alive.tolist(), y.tolist(), live.tolist())):
            if going and token != EOS:
                tokens[row].append(token)
            if going and return_attention and weights is not None:
                rows[row].append(weights[j].float().cpu())
        live = live & (y != EOS) & (limits[alive] > t + 1)
        finished = int(live.numel() - live.sum())
        if finished == live.numel():
            break
        # finished rows are dropped from the batch in groups: copying the state and the memory (every
        # layer's keys and values, for the Transformer) costs more than decoding a few finished rows
        if finished * COMPACT_EVERY >= live.numel():
            keep = live.nonzero().squeeze(1)
            alive, y, live = alive[keep], y[keep], live[keep]
            state, memory = state.select(keep), memory.select(keep)
    out = []
    for row in range(batch):
        attention = None
        if rows[row]:
            attention = torch.stack(rows[row])[:, : int(src_lens[row])]  # (T_out, S_real)
        score = float(scores[row])
        out.append(Hypothesis(tokens[row], score, score, attention))
    return out


# -- beam ------------------------------------------------------------------------------------


@dataclass
class _Beams:
    """The live part of a batched beam search: ``b`` unfinished sentences x ``K`` rows each."""

    sent: Tensor  # (b,) original sentence index
    scores: Tensor  # (b, K) log-probability of each live prefix; -inf marks an empty slot
    tokens: Tensor  # (b*K, t) the prefixes
    attn: Tensor | None  # (b*K, t, S) their attention rows, when asked for
    state: State  # rows (b*K)
    memory: Memory  # rows (b*K)

    def select(self, rows: Tensor, sent: Tensor, scores: Tensor, same_sentences: bool = False) -> _Beams:
        """Keep/reorder rows ``(b'*K,)``: new live sentences ``sent (b',)`` with ``scores (b', K)``.

        With ``same_sentences`` the rows only move within each sentence's block, whose ``K`` memory
        rows are identical copies, so the memory is left as it is.
        """
        attn = None if self.attn is None else self.attn.index_select(0, rows)
        memory = self.memory if same_sentences else self.memory.select(rows)
        return _Beams(sent, scores, self.tokens.index_select(0, rows), attn, self.state.select(rows), memory)


@dataclass
class _Finished:
    """Finished hypotheses per sentence, plus the tensors that decide when a sentence may stop."""

    hyps: list[list[Hypothesis]]
    count: Tensor  # (B,) finished hypotheses so far
    best: Tensor  # (B, N) the N best finished scores, -inf where fewer
    alpha: float  # GNMT length penalty
    src_lens: Tensor  # (B,) to cut attention rows to the real source

    @classmethod
    def empty(cls, src_lens: Tensor, nbest: int, alpha: float, device: torch.device) -> _Finished:
        batch = src_lens.size(0)
        count = torch.zeros(batch, dtype=torch.long, device=device)
        return cls(
            [[] for _ in range(batch)], count, torch.full((batch, nbest), float("-inf"), device=device), alpha, src_lens
        )

    def add(self, beams: _Beams, cand: tuple[Tensor, Tensor, Tensor], ends: Tensor, weights: Tensor | None, t: int):
        """Record the candidates among each sentence's top ``K`` that end at step ``t`` (``ends (b, 2K)``)."""
        scores, beam, token = cand
        k = beams.scores.size(1)
        ends = ends[:, :k] & torch.isfinite(scores[:, :k])  # (b, K): a finished hypothesis must rank in the beam
        normed = torch.where(ends, scores[:, :k] / gnmt_length_penalty(t + 1, self.alpha), float("-inf"))  # (b, K)
        self.count.index_add_(0, beams.sent, ends.sum(1))
        self.best[beams.sent] = torch.cat([self.best[beams.sent], normed], 1).topk(self.best.size(1), dim=1).values
        for i, j in ends.nonzero().tolist():  # bookkeeping: a few finished hypotheses per step
            row, last, sent = i * k + int(beam[i, j]), int(token[i, j]), int(beams.sent[i])
            tokens = beams.tokens[row].tolist() + ([] if last == EOS else [last])
            attention = None
            if beams.attn is not None and weights is not None:
                attention = torch.cat([beams.attn[row], weights[row : row + 1]])  # (t+1, S)
                attention = attention[:, : int(self.src_lens[sent])].float().cpu()
            self.hyps[sent].append(Hypothesis(tokens, float(normed[i, j]), float(scores[i, j]), attention))


def _start(model: Seq2Seq, src: Tensor, src_lens: Tensor, beam: int, attention: bool) -> _Beams:
    """Encode once, then copy every sentence ``beam`` times: rows ``b * K + k``."""
    batch = src.size(0)
    memory = model.encode(src, src_lens)
    state = model.init_state(memory)
    rows = torch.arange(batch, device=src.device).repeat_interleave(beam)  # (B*K,)
    scores = torch.full((batch, beam), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # one real prefix (BOS) per sentence; the other slots fill at step 1
    tokens = torch.empty(batch * beam, 0, dtype=torch.long, device=src.device)
    attn = memory.states.new_empty(batch * beam, 0, src.size(1)) if attention and model.has_attention else None
    sent = torch.arange(batch, device=src.device)
    return _Beams(sent, scores, tokens, attn, state.select(rows), memory.select(rows))


def _candidates(beams: _Beams, logp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The best ``2K`` extensions of each sentence's prefixes, best first.

    ``logp (b*K, V)`` -> scores, source beam and token, each ``(b, 2K)``. Taking 2K guarantees K
    that do not end in EOS (each beam has one EOS extension), so K prefixes always live on.
    """
    b, k = beams.scores.shape
    vocab = logp.size(-1)
    total = beams.scores.unsqueeze(-1) + logp.view(b, k, vocab)  # (b, K, V)
    scores, flat = total.view(b, k * vocab).topk(min(2 * k, k * vocab), dim=-1)  # (b, 2K)
    return scores, flat // vocab, flat % vocab


def _advance(beams: _Beams, cand: tuple[Tensor, Tensor, Tensor], ends: Tensor, weights: Tensor | None) -> _Beams:
    """The ``K`` best candidates that do not end here become the new prefixes."""
    scores, beam, token = cand
    b, k = beams.scores.shape
    live = scores.masked_fill(ends, float("-inf"))  # (b, 2K)
    new_scores, pick = live.topk(k, dim=1)  # (b, K)
    rows = (beam.gather(1, pick) + torch.arange(b, device=scores.device).unsqueeze(1) * k).view(-1)  # (b*K,)
    new = beams.select(rows, beams.sent, new_scores, same_sentences=True)
    new.tokens = torch.cat([new.tokens, token.gather(1, pick).view(-1, 1)], 1)  # (b*K, t+1)
    if new.attn is not None and weights is not None:
        new.attn = torch.cat([new.attn, weights.index_select(0, rows).unsqueeze(1)], 1)  # (b*K, t+1, S)
    return new


def _done(beams: _Beams, fin: _Finished, limits: Tensor, t: int) -> Tensor:
    """Which live sentences ``(b,)`` can stop after step ``t`` (0-based).

    A sentence stops at its length limit, once it has ``K`` finished hypotheses (fairseq's rule),
    or when no live prefix can still beat its N-th best finished one: log-probabilities only fall,
    and ``lp`` grows with length, so ``prefix / lp(max_len)`` bounds every completion's score.
    """
    lim = limits[beams.sent]  # (b,)
    best_live = beams.scores.max(1).values  # (b,)
    bound = best_live / gnmt_length_penalty(lim.float(), fin.alpha)  # (b,)
    hopeless = fin.best[beams.sent, -1] >= bound
    return (lim <= t + 1) | (fin.count[beams.sent] >= beams.scores.size(1)) | hopeless | torch.isinf(best_live)


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lens: Tensor,
    max_lens: Tensor,
    beam: int,
    length_penalty: float = 1.0,
    nbest: int = 1,
    return_attention: bool = False,
) -> list[list[Hypothesis]]:
    """Beam search over a padded batch ``src (B, S)``: the ``nbest`` best hypotheses per row, best first.

    ``max_lens (B,)`` caps each output (EOS included); ``length_penalty`` is GNMT's alpha (0: none).
    With ``beam=1`` the result equals :func:`greedy_search` (same tokens and log-probability).
    """
    if beam < 1 or not 1 <= nbest <= beam or length_penalty < 0:
        raise ValueError(
            f"need beam >= 1, 1 <= nbest <= beam and length_penalty >= 0, got {beam}, {nbest}, {length_penalty}"
        )
    limits = max_lens.to(src.device)
    beams = _start(model, src, src_lens, beam, return_attention)
    fin = _Finished.empty(src_lens, nbest, length_penalty, src.device)
    y = torch.full((src.size(0) * beam,), BOS, dtype=torch.long, device=src.device)  # (B*K,)
    for t in range(int(limits.max())):
        logp, state, weights = model.step_logits(y, beams.state, beams.memory)  # (b*K, V)
        beams.state = state
        cand = _candidates(beams, logp)  # each (b, 2K)
        ends = (cand[2] == EOS) | (limits[beams.sent] <= t + 1).unsqueeze(1)  # (b, 2K)
        fin.add(beams, cand, ends, weights, t)
        beams = _advance(beams, cand, ends, weights)
        done = _done(beams, fin, limits, t)  # (b,)
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)  # (b',)
            rows = (keep.unsqueeze(1) * beam + torch.arange(beam, device=src.device)).view(-1)  # (b'*K,)
            beams = beams.select(rows, beams.sent[keep], beams.scores[keep])
        y = beams.tokens[:, -1]
    return [sorted(h, key=lambda hyp: -hyp.score)[:nbest] for h in fin.hyps]


# -- scoring and corpora ---------------------------------------------------------------------


@torch.inference_mode()
def score_outputs(model: Seq2Seq, src: Tensor, src_lens: Tensor, outputs: Sequence[Sequence[int]]) -> Tensor:
    """Force-decode: ``log P(outputs[b] | src[b])`` for each row, ``(B,)``.

    ``outputs[b]`` is the token sequence as the model would emit it (EOS included when it ends
    with EOS); each step is scored with :meth:`Seq2Seq.step_logits`, the function search uses.
    """
    width = max(len(o) for o in outputs)
    out = torch.full((len(outputs), max(width, 1)), EOS, dtype=torch.long, device=src.device)  # (B, T)
    for row, seq in enumerate(outputs):
        out[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
    lens = torch.tensor([len(o) for o in outputs], device=src.device)  # (B,)
    real = torch.arange(out.size(1), device=src.device)[None, :] < lens[:, None]  # (B, T)
    memory = model.encode(src, src_lens)
    state = model.init_state(memory)
    y = torch.full((len(outputs),), BOS, dtype=torch.long, device=src.device)
    total = torch.zeros(len(outputs), device=src.device)
    for t in range(width):
        logp, state, _ = model.step_logits(y, state, memory)  # (B, V)
        step = logp.gather(1, out[:, t : t + 1]).squeeze(1)  # (B,)
        total = total + torch.where(real[:, t], step, torch.zeros_like(step))
        y = out[:, t]
    return total


@dataclass(frozen=True)
class Search:
    """How to decode a corpus: the search (greedy for ``beam == 1``), its limits and its batches.

    ``batch_size`` sentences (``batch_size * beam`` rows under beam search) go through at a time;
    the output stops after ``max_ratio`` x source length + 10 tokens. ``precision`` is ``fp32``,
    ``bf16`` (autocast; scores stay float32) or ``auto`` (bf16 on a CPU that has it natively).
    """

    beam: int = 1
    length_penalty: float = 1.0  # GNMT's alpha; 0: none
    nbest: int = 1
    max_ratio: float = 2.0
    batch_size: int = 128
    precision: str = "fp32"
    return_attention: bool = False


def decode_corpus_nbest(
    model: Seq2Seq, src_ids: list[list[int]], device: torch.device, search: Search = Search()
) -> list[list[Hypothesis]]:
    """Decode many sentences, batched in order of length: the ``search.nbest`` best per sentence, in input order."""
    if search.nbest > search.beam:
        raise ValueError(f"nbest={search.nbest} needs a beam at least as wide, got beam={search.beam}")
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    model.eval()
    for start in range(0, len(order), search.batch_size):
        rows = order[start : start + search.batch_size]
        src, src_lens = source_tensor([src_ids[i] for i in rows])
        src, max_lens = src.to(device), max_output_lengths(src_lens, search.max_ratio)
        if model.max_output_length is not None:  # a learned position table ends there
            max_lens = max_lens.clamp(max=model.max_output_length)
        with autocast(search.precision, device):
            if search.beam == 1:
                hyps = [[h] for h in greedy_search(model, src, src_lens, max_lens, search.return_attention)]
            else:
                hyps = beam_search(
                    model,
                    src,
                    src_lens,
                    max_lens,
                    search.beam,
                    search.length_penalty,
                    search.nbest,
                    search.return_attention,
                )
        for i, hyp in zip(rows, hyps):
            results[i] = hyp
    return results


def decode_corpus(
    model: Seq2Seq, src_ids: list[list[int]], device: torch.device, search: Search = Search()
) -> list[Hypothesis]:
    """The best hypothesis per sentence, in input order."""
    return [h[0] for h in decode_corpus_nbest(model, src_ids, device, search)]
