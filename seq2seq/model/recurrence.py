"""The teacher-forced step loops of Bahdanau and of Luong with input feeding, each one autograd function.

Run op by op under autograd, a decoder step records some thirty graph nodes, and its backward pass
multiplies each weight's gradient at ``K = B`` (the batch's sentences) and adds it into the weight's
gradient, once per target position. Here the forward pass runs the loop without recording
anything, keeping what the backward pass needs in buffers of shape ``(T, B, ...)``, and the
backward pass runs the loop in reverse by hand, as cuDNN's RNN API splits it:

- *through time*, step by step: only the gradients that the previous step needs (the gates', the
  state's, the query's), element-wise work done in place on buffers;
- *weights*, after the loop: one matrix multiply per weight over all ``T * B`` rows
  (``dW_joint = dG^T X``, ``dW_c``, the query weight, ``v``), and one batched product per memory
  gradient (``dH = A^T dC``).

The arithmetic is the step loop's: ``tests/test_recurrence.py`` pins outputs and every gradient to
:meth:`~seq2seq.model.decoder.Decoder.forward`'s autograd loop. The decoders use these functions
for float32 training and teacher-forced validation of a one-layer decoder on the CPU
(:func:`fused_loop_applies`); bf16 autocast, stacked decoders, teacher forcing below 1, decoding and
other devices keep the step loop.

Shape letters as in :mod:`seq2seq.model.decoder`; ``A`` is the additive score's size, ``Q`` the
size of the keys a dot-product score compares a query with (``keys_proj``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seq2seq.model.attention import Attention, ConcatScore, DotScore, GeneralScore, ScaledDotScore


def fused_loop_applies(memory, attention: Attention | None = None) -> bool:
    """Whether the decoders' fused loops serve this batch: float32 on a CPU, without autocast, one
    attention head (multi-head attention keeps the step loop)."""
    states = memory.states
    if attention is not None and attention.heads > 1:
        return False
    return states.device.type == "cpu" and states.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


@dataclass
class Score:
    """A score function's parameters as the fused loops use them.

    ``additive``: ``e = v . tanh(W_q q + keys_proj)`` with ``query_weight`` ``W_q (A, H)`` and
    ``energy`` ``v (A,)``; otherwise ``e = scale * q . keys_proj`` (dot, scaled dot, general).
    """

    additive: bool
    query_weight: Tensor | None = None
    energy: Tensor | None = None
    scale: float = 1.0

    @classmethod
    def of(cls, attention: Attention) -> Score:
        if attention.heads > 1:
            raise TypeError(f"no fused loop for {attention.heads} attention heads")
        if isinstance(attention, ConcatScore):
            return cls(True, attention.query_layer.weight, attention.energy_layer.weight[0])
        if isinstance(attention, ScaledDotScore):
            return cls(False, scale=attention.scale)
        if isinstance(attention, (DotScore, GeneralScore)):
            return cls(False)
        raise TypeError(f"no fused loop for {type(attention).__name__}")


# -- the pieces each step runs ---------------------------------------------------------------


def _cell(gates: Tensor, c_prev: Tensor, act: Tensor, c_out: Tensor, tc_out: Tensor, h_out: Tensor) -> None:
    """LSTM update from pre-activation ``gates (B, 4H)`` (i, f, g, o) into the given buffers.

    ``act`` gets sigmoid(i), sigmoid(f), tanh(g), sigmoid(o); ``c_out`` the new cell, ``tc_out``
    its tanh, ``h_out`` the new state (which may be a strided slice of a larger buffer).
    """
    size = c_prev.size(1)
    torch.sigmoid(gates, out=act)
    torch.tanh(gates[:, 2 * size : 3 * size], out=act[:, 2 * size : 3 * size])
    i, f, g, o = act.split(size, 1)
    torch.mul(f, c_prev, out=c_out).addcmul_(i, g)
    torch.tanh(c_out, out=tc_out)
    torch.mul(o, tc_out, out=h_out)


def _cell_backward(dh: Tensor, dc: Tensor, act: Tensor, c_prev: Tensor, tc: Tensor, dgates: Tensor) -> Tensor:
    """Gradient of the gates' pre-activations into ``dgates (B, 4H)``; returns that of ``c_prev``.

    ``dc`` is the gradient reaching the new cell from later steps; it is overwritten.
    """
    size = c_prev.size(1)
    i, f, g, o = act.split(size, 1)
    di, df, dg, do = dgates.split(size, 1)
    torch.mul(dh, tc, out=do)  # d o
    dc.add_(torch.ops.aten.tanh_backward(dh * o, tc))  # d c_t in total
    torch.mul(dc, g, out=di)
    torch.mul(dc, c_prev, out=df)
    d_g = dc * i
    dc_prev = dc.mul_(f)
    # through the activations: sigmoid' = s (1 - s) for i, f, o (the g columns are overwritten next),
    # tanh' = 1 - g^2 for g
    torch.ops.aten.sigmoid_backward.grad_input(dgates, act, grad_input=dgates)
    torch.ops.aten.tanh_backward.grad_input(d_g, g, grad_input=dg)
    return dc_prev


class _Pool:
    """Buffers kept from one batch to the next, by name.

    A loop's large buffers (the additive energies are ``T * B * S * A`` floats, 10-20 MB) would
    otherwise be fresh memory every batch, whose pages the kernel maps and zeroes on first touch.
    A buffer is taken out of the pool while a pass uses it and put back when the pass's autograd
    node is freed (after its backward passes, or unused), so two passes in flight never share one.
    """

    def __init__(self):
        self.free: dict[str, Tensor] = {}

    def lend(self, owner: object, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A buffer of ``shape`` for ``owner``'s pass, back in the pool when ``owner`` is garbage-collected.

        Under inference mode (decoding, validation) the pool stays out of it: a tensor made there
        cannot be written outside it.
        """
        if torch.is_inference_mode_enabled():
            return like.new_empty(shape)
        size = 1
        for n in shape:
            size *= n
        flat = self.free.pop(name, None)
        if flat is None or flat.numel() < size or flat.dtype != like.dtype or flat.device != like.device:
            flat = like.new_empty(size)
        weakref.finalize(owner, self._put, name, flat)
        return flat[:size].view(shape)

    def _put(self, name: str, flat: Tensor) -> None:
        held = self.free.get(name)
        if held is None or held.numel() < flat.numel():
            self.free[name] = flat


_POOL = _Pool()


@dataclass
class _AttentionBuffers:
    """What the loops keep of attention: ``weights (T, B, S)``, the additive ``energy (T, B, S, A)``,
    and the backward pass's per-step gradients of the scores, the energies' pre-activations and
    the projected query."""

    score: Score
    values: Tensor
    keys_proj: Tensor
    pad: Tensor
    weights: Tensor
    energy: Tensor | None
    d_scores: Tensor | None = None
    d_energy: Tensor | None = None
    d_query: Tensor | None = None

    @classmethod
    def allocate(cls, score: Score, values: Tensor, keys_proj: Tensor, pad: Tensor, steps: int) -> _AttentionBuffers:
        batch, length = values.shape[:2]
        weights = values.new_empty(steps, batch, length)
        buffers = cls(score, values, keys_proj, pad, weights, None)
        if score.additive:
            buffers.energy = _POOL.lend(buffers, "energy", (steps, batch, length, keys_proj.size(2)), values)
        return buffers

    def attend(self, t: int, query: Tensor) -> Tensor:
        """Step ``t``'s attention for ``query (B, H)``: keeps the weights, returns the context ``(B, K)``."""
        score = self.score
        if score.additive:
            q = torch.mm(query, score.query_weight.t())  # (B, A)
            energy = torch.add(self.keys_proj, q.unsqueeze(1), out=self.energy[t]).tanh_()  # (B, S, A)
            scores = torch.matmul(energy, score.energy)  # (B, S)
        else:
            # (B, 1, Q) @ (B, Q, S): 2.4x faster than (B, S, Q) @ (B, Q, 1) at these sizes
            scores = torch.bmm(query.unsqueeze(1), self.keys_proj.transpose(1, 2)).squeeze(1)  # (B, S)
            if score.scale != 1.0:
                scores.mul_(score.scale)
        weights = torch.softmax(scores.masked_fill_(self.pad, float("-inf")), dim=-1)
        self.weights[t] = weights
        return torch.bmm(weights.unsqueeze(1), self.values).squeeze(1)  # (B, K)

    def start_backward(self) -> None:
        self.d_scores = torch.empty_like(self.weights)
        if self.score.additive:
            steps, batch, length, size = self.energy.shape
            self.d_energy = _POOL.lend(self, "d_energy", (steps, batch, length, size), self.energy)
            self.d_query = self.energy.new_empty(steps, batch, size)

    def backward(self, t: int, d_context: Tensor, d_weights_extra: Tensor | None) -> Tensor:
        """Step ``t``'s gradients from that of its context ``(B, K)``: returns the query's ``(B, H)``,
        keeps those of the scores (and, additive, of the energies' pre-activations and of ``W_q q``)."""
        score, weights, d_scores = self.score, self.weights[t], self.d_scores[t]
        d_weights = torch.bmm(d_context.unsqueeze(1), self.values.transpose(1, 2)).squeeze(1)  # (B, S)
        if d_weights_extra is not None:  # the weights are an output too (nothing in training's loss reads them)
            d_weights = d_weights + d_weights_extra
        # softmax: d s = w * (d w - sum(w * d w)); padded positions have w = 0 and get 0
        torch.mul(weights, d_weights - (weights * d_weights).sum(1, keepdim=True), out=d_scores)
        if score.additive:  # d (W_q q + keys_proj) = tanh'(.) * ds * v
            d_energy = torch.mul(d_scores.unsqueeze(2), score.energy, out=self.d_energy[t])
            torch.ops.aten.tanh_backward.grad_input(d_energy, self.energy[t], grad_input=d_energy)
            return torch.mm(torch.sum(d_energy, 1, out=self.d_query[t]), score.query_weight)  # (B, A) @ (A, H)
        if score.scale != 1.0:
            d_scores.mul_(score.scale)
        return torch.bmm(d_scores.unsqueeze(1), self.keys_proj).squeeze(1)  # (B, Q) = (B, H)

    def grads(self, d_contexts: Tensor, queries: Tensor) -> tuple[Tensor, ...]:
        """After the loop: gradients of values ``(B, S, K)``, keys_proj, the query weight and ``v``
        from every step's context gradient ``d_contexts (T, B, K)`` and query ``queries (T, B, H)``."""
        steps, batch = d_contexts.shape[:2]
        d_values = torch.bmm(self.weights.permute(1, 2, 0), d_contexts.transpose(0, 1))  # sum_t w_t (x) dc_t
        if not self.score.additive:  # scores = scale * keys_proj q: d keys_proj = sum_t ds_t (x) q_t
            d_keys = torch.bmm(self.d_scores.permute(1, 2, 0), queries.transpose(0, 1))
            return d_values, d_keys, None, None
        size = self.energy.size(3)
        d_keys = self.d_energy.sum(0)  # (B, S, A)
        d_q = self.d_query.view(steps * batch, size)  # (T B, A): d (W_q q)
        d_query_weight = torch.mm(d_q.t(), queries.reshape(steps * batch, -1))  # (A, H)
        d_v = torch.mv(self.energy.view(-1, size).t(), self.d_scores.view(-1))  # sum ds * tanh(.)
        return d_values, d_keys, d_query_weight, d_v


class _BahdanauLoop(torch.autograd.Function):
    """``c_t = attn(s_{t-1}); s_t = LSTM(pre_t + W [c_t; s_{t-1}])`` over all T steps -> states, contexts, weights."""

    @staticmethod
    def forward(ctx, pre, values, keys_proj, pad, h0, c0, joint, query_weight, energy, additive, scale):
        score = Score(additive, query_weight, energy, scale)
        (batch, steps, four), memory_size = pre.shape, values.size(2)
        hidden = four // 4
        att = _AttentionBuffers.allocate(score, values, keys_proj, pad, steps)
        xs = pre.new_empty(steps, batch, memory_size + hidden)  # [c_t; s_{t-1}], the joint matmul's input
        act, tanh_cells = pre.new_empty(steps, batch, four), pre.new_empty(steps, batch, hidden)
        cells, states = pre.new_empty(steps + 1, batch, hidden), pre.new_empty(steps, batch, hidden)
        cells[0] = c0
        gates, h = pre.new_empty(batch, four), h0
        for t in range(steps):
            xs[t, :, memory_size:] = h
            xs[t, :, :memory_size] = att.attend(t, h)
            torch.addmm(pre[:, t], xs[t], joint.t(), out=gates)
            _cell(gates, cells[t], act[t], cells[t + 1], tanh_cells[t], states[t])
            h = states[t]
        ctx.att, ctx.buffers = att, (xs, act, cells, tanh_cells)
        ctx.save_for_backward(joint)
        ctx.set_materialize_grads(False)
        contexts = xs[:, :, :memory_size]
        return states.transpose(0, 1), contexts.transpose(0, 1), att.weights.transpose(0, 1)

    @staticmethod
    @once_differentiable  # the backward pass is written out, not differentiable again
    def backward(ctx, d_states, d_contexts_out, d_weights):
        (joint,) = ctx.saved_tensors
        att, (xs, act, cells, tanh_cells) = ctx.att, ctx.buffers
        steps, batch, four = act.shape
        hidden, memory_size = four // 4, xs.size(2) - four // 4
        att.start_backward()
        d_gates, d_contexts = torch.empty_like(act), xs.new_empty(steps, batch, memory_size)
        dh, dc = xs.new_zeros(batch, hidden), xs.new_zeros(batch, hidden)
        for t in reversed(range(steps)):
            if d_states is not None:
                dh = dh + d_states[:, t]
            dc = _cell_backward(dh, dc, act[t], cells[t], tanh_cells[t], d_gates[t])
            dx = torch.mm(d_gates[t], joint)  # (B, K + H): d [c_t; s_{t-1}]
            d_context = dx[:, :memory_size]
            if d_contexts_out is not None:
                d_context = d_context + d_contexts_out[:, t]
            d_contexts[t] = d_context
            extra = None if d_weights is None else d_weights[:, t]
            dh = dx[:, memory_size:] + att.backward(t, d_contexts[t], extra)
        queries = xs[:, :, memory_size:]  # s_{t-1}
        d_joint = torch.mm(d_gates.view(steps * batch, four).t(), xs.view(steps * batch, -1))
        d_values, d_keys, d_query_weight, d_v = att.grads(d_contexts, queries)
        d_pre = d_gates.transpose(0, 1)
        return d_pre, d_values, d_keys, None, dh, dc, d_joint, d_query_weight, d_v, None, None


class _LuongFeedLoop(torch.autograd.Function):
    """``s_t = LSTM(pre_t + W [h~_{t-1}; s_{t-1}]); c_t = attn(s_t); h~_t = tanh(W_c [c_t; s_t])``
    over all T steps, with dropout mask ``drop (T, B, D)`` on the h~ fed back -> h~, weights."""

    @staticmethod
    def forward(ctx, pre, values, keys_proj, pad, h0, c0, joint, combine, drop, query_weight, energy, additive, scale):
        score = Score(additive, query_weight, energy, scale)
        (batch, steps, four), memory_size, feature = pre.shape, values.size(2), combine.size(0)
        hidden = four // 4
        att = _AttentionBuffers.allocate(score, values, keys_proj, pad, steps)
        xs = pre.new_empty(steps, batch, feature + hidden)  # [h~_{t-1}; s_{t-1}]
        zs = pre.new_empty(steps, batch, memory_size + hidden)  # [c_t; s_t], W_c's input
        outs = pre.new_empty(steps, batch, feature)  # h~_t
        act, tanh_cells = pre.new_empty(steps, batch, four), pre.new_empty(steps, batch, hidden)
        cells = pre.new_empty(steps + 1, batch, hidden)
        cells[0] = c0
        xs[0, :, :feature] = 0.0
        xs[0, :, feature:] = h0
        gates = pre.new_empty(batch, four)
        for t in range(steps):
            torch.addmm(pre[:, t], xs[t], joint.t(), out=gates)
            h = zs[t, :, memory_size:]
            _cell(gates, cells[t], act[t], cells[t + 1], tanh_cells[t], h)
            zs[t, :, :memory_size] = att.attend(t, h)
            torch.mm(zs[t], combine.t(), out=outs[t]).tanh_()
            if t + 1 < steps:
                if drop is None:
                    xs[t + 1, :, :feature] = outs[t]
                else:
                    torch.mul(outs[t], drop[t], out=xs[t + 1, :, :feature])
                xs[t + 1, :, feature:] = h
        ctx.att, ctx.buffers = att, (xs, zs, outs, act, cells, tanh_cells, drop)
        ctx.save_for_backward(joint, combine)
        ctx.set_materialize_grads(False)
        return outs.transpose(0, 1), att.weights.transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_outs, d_weights):
        joint, combine = ctx.saved_tensors
        att, (xs, zs, outs, act, cells, tanh_cells, drop) = ctx.att, ctx.buffers
        steps, batch, four = act.shape
        hidden, feature, memory_size = four // 4, outs.size(2), zs.size(2) - four // 4
        att.start_backward()
        d_gates, d_contexts = torch.empty_like(act), xs.new_empty(steps, batch, memory_size)
        d_combined = torch.empty_like(outs)  # d (W_c [c_t; s_t])
        dh, dc, d_feed = xs.new_zeros(batch, hidden), xs.new_zeros(batch, hidden), xs.new_zeros(batch, feature)
        for t in reversed(range(steps)):
            d_out = d_feed if drop is None else d_feed * drop[t]
            if d_outs is not None:
                d_out = d_out + d_outs[:, t]
            torch.mul(outs[t], outs[t], out=d_combined[t]).neg_().add_(1.0).mul_(d_out)  # tanh'
            dz = torch.mm(d_combined[t], combine)  # (B, K + H): d [c_t; s_t]
            d_contexts[t] = dz[:, :memory_size]
            extra = None if d_weights is None else d_weights[:, t]
            dh = dh + dz[:, memory_size:] + att.backward(t, d_contexts[t], extra)
            dc = _cell_backward(dh, dc, act[t], cells[t], tanh_cells[t], d_gates[t])
            dx = torch.mm(d_gates[t], joint)  # (B, D + H): d [h~_{t-1}; s_{t-1}]
            d_feed, dh = dx[:, :feature], dx[:, feature:]
        rows = steps * batch
        d_joint = torch.mm(d_gates.view(rows, four).t(), xs.view(rows, -1))
        d_combine = torch.mm(d_combined.view(rows, feature).t(), zs.view(rows, -1))
        d_values, d_keys, d_query_weight, d_v = att.grads(d_contexts, zs[:, :, memory_size:])
        d_pre = d_gates.transpose(0, 1)
        return d_pre, d_values, d_keys, None, dh, dc, d_joint, d_combine, None, d_query_weight, d_v, None, None


def bahdanau_loop(pre, memory, h0, c0, attention: Attention) -> tuple[Tensor, Tensor, Tensor]:
    """Bahdanau's teacher-forced loop: ``pre (B, T, 4H)`` -> states ``(B, T, H)``, contexts ``(B, T, K)``,
    weights ``(B, T, S)``; ``h0``, ``c0`` are ``(B, H)``."""
    score = Score.of(attention)
    return _BahdanauLoop.apply(
        pre, memory.states, memory.keys_proj, ~memory.mask, h0, c0, memory.joint_weight,
        score.query_weight, score.energy, score.additive, score.scale,
    )  # fmt: skip


def luong_feed_loop(pre, memory, h0, c0, combine: Tensor, drop: Tensor | None, attention: Attention):
    """Luong's teacher-forced loop with input feeding: ``pre (B, T, 4H)`` -> h~ ``(B, T, D)``,
    weights ``(B, T, S)``; ``drop (T, B, D)`` is the dropout mask of the h~ fed back (None: no dropout)."""
    score = Score.of(attention)
    return _LuongFeedLoop.apply(
        pre, memory.states, memory.keys_proj, ~memory.mask, h0, c0, memory.joint_weight, combine, drop,
        score.query_weight, score.energy, score.additive, score.scale,
    )  # fmt: skip
