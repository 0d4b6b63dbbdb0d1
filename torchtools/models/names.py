"""The course's name classifier: Embedding -> GRU/LSTM/RNN -> Linear over the last layer's final hidden states.

Names of different lengths share a batch. Padding must never enter the recurrence, or a name's result
would depend on its batch. Two correct ways exist: nn.GRU on a packed sequence, and the GRU below, which
runs both directions of a layer as one batched matrix product per step on the still-running names only
(a packed layout of its own), with a hand-written backward pass. On the CPU the second is the faster by
about 1.4x (benchmarks/names.py measures both); CUDA and the LSTM/RNN cells use packed nn modules.
`NameClassifier(fast_cpu_gru=...)` says which runs; the default picks the faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}
PAD = 0  # the vocabulary's padding index: a name's length is its count of non-PAD codes


class NameClassifier(nn.Module):
    def __init__(self, vocabulary_size: int, classes: int, *, hidden: int = 100, layers: int = 2,
                 bidirectional: bool = True, cell: str = "gru", fast_cpu_gru: bool | None = None):
        """fast_cpu_gru: True runs a GRU's CPU batches through gru_final_states, False through nn.GRU on packed
        sequences; None (the default) picks the former, the faster. Other devices and cells always use the
        latter. Both give the same numbers (tests/test_names_rnn.py checks outputs and gradients)."""
        super().__init__()
        if fast_cpu_gru and cell != "gru":
            raise ValueError(f"fast_cpu_gru runs a GRU; cell is {cell!r}")
        self.directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocabulary_size, hidden, padding_idx=PAD)
        self.rnn = CELLS[cell](hidden, hidden, layers, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden * self.directions, classes)
        self._fast_cpu_gru = cell == "gru" and fast_cpu_gru is not False

    def forward(self, codes: Tensor) -> Tensor:
        """codes (batch, time), names right-padded with PAD -> logits (batch, classes)."""
        lengths = (codes != PAD).sum(dim=1).cpu()
        # A hooked GRU (the model summary's, TensorBoard's graph) is called as the module, so the hooks see it.
        if self._fast_cpu_gru and codes.device.type == "cpu" and not self.rnn._forward_hooks:
            order = torch.argsort(lengths, descending=True, stable=True)
            final = gru_final_states(self.embedding, self.rnn, codes[order], lengths[order])
            logits = self.fc(torch.cat(list(final), dim=1))
            return logits[torch.argsort(order)]
        embedded = self.embedding(codes[:, :int(lengths.max())].t())  # (time, batch, hidden)
        _, final = self.rnn(pack_padded_sequence(embedded, lengths, enforce_sorted=False))
        if isinstance(final, tuple):  # LSTM: (h_n, c_n)
            final = final[0]
        # final: (layers * directions, batch, hidden); the last `directions` rows are the top layer's.
        return self.fc(torch.cat(list(final[-self.directions:]), dim=1))


@dataclass
class PackedLayout:
    """Where each (step, name) lands when only running names are kept: names sorted longest first."""

    sizes: list[int]  # names still running at each step
    mask: Tensor  # (time, batch): the step is part of the name
    reverse: Tensor  # packed row of (t, b) -> packed row of (length_b - 1 - t, b): each name read backwards

    @classmethod
    def of(cls, lengths: Tensor) -> PackedLayout:
        steps = int(lengths[0])
        mask = torch.arange(steps)[:, None] < lengths[None, :]
        positions = torch.full(mask.shape, -1, dtype=torch.long)
        positions[mask] = torch.arange(int(mask.sum()))
        step, name = mask.nonzero(as_tuple=True)
        reverse = positions[lengths[name] - 1 - step, name]
        return cls(mask.sum(dim=1).tolist(), mask, reverse)


class _Reverse(torch.autograd.Function):
    """rows[index] for an index that is its own inverse (reading names backwards): the gradient is the same gather."""

    @staticmethod
    def forward(ctx, rows: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        return rows[index]

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return grad[index], None


class _GRURecurrence(torch.autograd.Function):
    """One GRU layer's recurrence for D directions at once, on packed rows.

    gates_in (D, rows, 3H) = W_ih x + b_ih (precomputed for all steps), weight_hh (D, H, 3H) transposed,
    bias_hh (D, 1, 3H). Returns every step's hidden state (D, rows, H) and each name's final one (D, batch, H).
    PyTorch's GRU: r, z = sigmoid(i_rz + h_rz); n = tanh(i_n + r * h_n); h' = n + z * (h - n).
    Each step writes straight into whole-layer buffers (out=, in place): few, large operations are what
    make this faster than autograd over nn.GRU's per-step graph.
    """

    @staticmethod
    def forward(ctx, gates_in: Tensor, weight_hh: Tensor, bias_hh: Tensor, sizes: list[int]):
        directions, rows, three_hidden = gates_in.shape
        hidden = three_hidden // 3
        outputs = gates_in.new_empty(directions, rows, hidden)
        gates = gates_in.new_empty(directions, rows, three_hidden)  # r, z and n after their activations
        from_hidden = gates_in.new_empty(directions, rows, three_hidden)  # W_hh h + b_hh; dr needs its n part
        finals = []
        state = gates_in.new_zeros(directions, sizes[0], hidden)
        start = 0
        for step, running in enumerate(sizes):
            now = slice(start, start + running)
            recurrent = from_hidden[:, now]
            torch.baddbmm(bias_hh, state, weight_hh, out=recurrent)
            activated = gates[:, now]
            rz = activated[..., :2 * hidden]
            torch.add(gates_in[:, now, :2 * hidden], recurrent[..., :2 * hidden], out=rz).sigmoid_()
            candidate = activated[..., 2 * hidden:]
            torch.addcmul(gates_in[:, now, 2 * hidden:], rz[..., :hidden], recurrent[..., 2 * hidden:],
                          out=candidate).tanh_()
            state = torch.lerp(candidate, state, rz[..., hidden:], out=outputs[:, now])
            following = sizes[step + 1] if step + 1 < len(sizes) else 0
            finals.append(state[:, following:])
            state = state[:, :following]
            start += running
        ctx.sizes = sizes
        ctx.save_for_backward(weight_hh, outputs, gates, from_hidden)
        # The top layer's step outputs and the lower layers' finals go unused: no zero gradients for them.
        ctx.set_materialize_grads(False)
        return outputs, torch.cat(finals[::-1], dim=1)  # the shortest names finish first

    @staticmethod
    def backward(ctx, grad_outputs: Tensor, grad_finals: Tensor):
        weight_hh, outputs, gates, from_hidden = ctx.saved_tensors
        sizes = ctx.sizes
        hidden = weight_hh.shape[1]
        weight_rz_t = weight_hh[..., :2 * hidden].transpose(1, 2)
        weight_n_t = weight_hh[..., 2 * hidden:].transpose(1, 2)
        grad_gates_in = torch.empty_like(gates)
        grad_recurrent_n = torch.empty_like(outputs)  # d loss / d (W_hn h + b_hn)
        starts = [0]
        for running in sizes[:-1]:
            starts.append(starts[-1] + running)
        carry = None
        for step in range(len(sizes) - 1, -1, -1):
            running, start = sizes[step], starts[step]
            now = slice(start, start + running)
            following = carry.shape[1] if carry is not None else 0
            grad_state = _grad_of_state(grad_outputs, grad_finals, carry, now, following, running)
            activated = gates[:, now]
            rz, reset, update = activated[..., :2 * hidden], activated[..., :hidden], activated[..., hidden:2 * hidden]
            candidate = activated[..., 2 * hidden:]
            state_before = outputs[:, starts[step - 1]:starts[step - 1] + running] if step else None
            carried = grad_state * update
            grad_in = grad_gates_in[:, now]
            grad_pre_n = grad_in[..., 2 * hidden:]
            torch.mul(grad_state - carried, torch.addcmul(torch.ones_like(candidate), candidate, candidate, value=-1),
                      out=grad_pre_n)
            torch.mul(grad_pre_n, from_hidden[:, now, 2 * hidden:], out=grad_in[..., :hidden])
            if state_before is None:
                torch.mul(grad_state, candidate, out=grad_in[..., hidden:2 * hidden]).neg_()
            else:
                torch.mul(grad_state, state_before - candidate, out=grad_in[..., hidden:2 * hidden])
            grad_in[..., :2 * hidden].mul_(torch.addcmul(rz, rz, rz, value=-1))
            grad_n = torch.mul(grad_pre_n, reset, out=grad_recurrent_n[:, now])
            if step:
                carry = torch.baddbmm(carried, grad_in[..., :2 * hidden], weight_rz_t)
                carry.baddbmm_(grad_n, weight_n_t)
        # Weight gradients once over all steps, from each step's starting state: large products, not one a step.
        previous = torch.cat([outputs.new_zeros(outputs.shape[0], sizes[0], hidden)]
                             + [outputs[:, starts[step - 1]:starts[step - 1] + sizes[step]]
                                for step in range(1, len(sizes))], dim=1)
        grad_recurrent = torch.cat([grad_gates_in[..., :2 * hidden], grad_recurrent_n], dim=-1)
        grad_weight = torch.bmm(previous.transpose(1, 2), grad_recurrent)
        return grad_gates_in, grad_weight, grad_recurrent.sum(dim=1, keepdim=True), None


def _grad_of_state(grad_outputs, grad_finals, carry, now: slice, following: int, running: int) -> Tensor:
    """What a step's state gets: its output's gradient, what the next step hands back (to the `following`
    names still running) and, for names whose last step this is, their final state's gradient."""
    if grad_outputs is not None:
        grad_state = grad_outputs[:, now].clone()
    else:
        reference = carry if carry is not None else grad_finals
        grad_state = reference.new_zeros(reference.shape[0], running, reference.shape[2])
    if following:
        grad_state[:, :following] += carry
    if following < running and grad_finals is not None:
        grad_state[:, following:] += grad_finals[:, following:running]
    return grad_state


def gru_final_states(embedding: nn.Embedding, gru: nn.GRU, codes: Tensor, lengths: Tensor) -> Tensor:
    """The top layer's final hidden states (directions, batch, hidden) of `gru` over embedded `codes`.

    codes (batch, time) and lengths (batch,) on the CPU, sorted longest first. Same numbers as nn.GRU on a
    packed sequence; the embedding and the first layer's input weights act as one lookup table.
    """
    layout = PackedLayout.of(lengths)
    tokens = codes.t()[:len(layout.sizes)][layout.mask]  # packed rows, step by step
    directions = 2 if gru.bidirectional else 1
    hidden = gru.hidden_size
    layer_input = None
    for layer in range(gru.num_layers):
        suffixes = ["", "_reverse"][:directions]
        weight_ih = torch.cat([getattr(gru, f"weight_ih_l{layer}{suffix}") for suffix in suffixes])
        bias_ih = torch.cat([getattr(gru, f"bias_ih_l{layer}{suffix}") for suffix in suffixes])
        weight_hh = torch.stack([getattr(gru, f"weight_hh_l{layer}{suffix}") for suffix in suffixes]).transpose(1, 2)
        bias_hh = torch.stack([getattr(gru, f"bias_hh_l{layer}{suffix}") for suffix in suffixes])[:, None, :]
        if layer == 0:
            table = F.linear(embedding.weight, weight_ih, bias_ih)  # (vocabulary, D * 3H)
            per_direction = [F.embedding(tokens, table[:, :3 * hidden])]
            if directions == 2:
                per_direction.append(F.embedding(tokens[layout.reverse], table[:, 3 * hidden:]))
        else:
            projected = F.linear(layer_input, weight_ih, bias_ih)  # (rows, D * 3H)
            per_direction = [projected[:, :3 * hidden]]
            if directions == 2:
                per_direction.append(_Reverse.apply(projected[:, 3 * hidden:], layout.reverse))
        outputs, finals = _GRURecurrence.apply(torch.stack(per_direction), weight_hh, bias_hh, layout.sizes)
        if directions == 2:
            layer_input = torch.cat([outputs[0], _Reverse.apply(outputs[1], layout.reverse)], dim=-1)
        else:
            layer_input = outputs[0]
    return finals
