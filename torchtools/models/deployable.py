"""torchtools' models as graphs that take what a deployment has at hand, for export (torchtools export).

An exported image model takes the stored uint8 pictures (N, C, H, W) exactly as torchtools keeps them
(decoded RGB or grey, resized by `ImageFormat.prepare`), and does the rest inside the graph: the centre
crop, the scaling to 0..1 and the normalisation with the checkpoint's mean and std. So a deployment
cannot get the statistics wrong (cifar's are measured on each training set), and feeds bytes, not
floats. A names model takes the encoded names (N, T) int64, right-padded with 0, as NameClassifier
does; a table model takes the raw feature rows (N, F) float32 and standardises them inside.

Each graph computes exactly what torchtools computes (`torchtools export` checks it on real inputs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan  # the one export-time loop with a free length

from torchtools.models.names import PAD, NameClassifier


class ImageGraph(nn.Module):
    """uint8 (N, C, size, size) -> logits: centre crop, (x / 255 - mean) / std, then the model."""

    def __init__(self, model: nn.Module, mean, std, crop: int | None):
        super().__init__()
        self.model, self.crop = model, crop
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # The same fused multiply-add as torchtools' BatchTransform, so the numbers are the same ones.
        self.register_buffer("scale", 1 / (255 * std_t), persistent=False)
        self.register_buffer("shift", -mean_t / std_t, persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if self.crop is not None and self.crop != images.shape[-1]:
            top, left = (images.shape[-2] - self.crop) // 2, (images.shape[-1] - self.crop) // 2
            images = images[..., top:top + self.crop, left:left + self.crop]
        return self.model(torch.addcmul(self.shift, images.float(), self.scale))


class TableGraph(nn.Module):
    """Raw feature rows (N, F) -> logits: standardised with the training statistics, then the model."""

    def __init__(self, model: nn.Module, mean: Tensor, std: Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, rows: Tensor) -> Tensor:
        return self.model((rows - self.mean) / self.std)


class NamesGraph(nn.Module):
    """NameClassifier's numbers without packed sequences, which no exporter can trace.

    Each layer and direction runs as a one-layer recurrence over the padded batch. The reverse direction
    reads each name backwards within its own length (a gather), so padding stays after the name in both
    directions and never reaches a state that is used; each name's final state is read at its last
    character. Under torch.jit.trace the recurrence is the nn module's own op (its length stays free);
    under torch.export (ExportedProgram, ONNX) it is a scan over time, which keeps the length dynamic
    where nn.GRU's decomposition would fix it to the example's.
    """

    def __init__(self, classifier: NameClassifier):
        super().__init__()
        rnn = classifier.rnn
        self.embedding, self.fc, self.directions = classifier.embedding, classifier.fc, classifier.directions
        self.kind = type(rnn).__name__  # GRU, LSTM or RNN
        extra = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
        self.recurrences = nn.ModuleList()
        for layer in range(rnn.num_layers):
            for suffix in ("", "_reverse")[:self.directions]:
                one = type(rnn)(rnn.input_size if layer == 0 else rnn.hidden_size * self.directions,
                                rnn.hidden_size, 1, batch_first=True, **extra)
                one.load_state_dict({f"{name}_l0": getattr(rnn, f"{name}_l{layer}{suffix}")
                                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
                self.recurrences.append(one)

    def forward(self, codes: Tensor) -> Tensor:
        """codes (batch, time) int64, right-padded with 0 -> logits (batch, classes)."""
        lengths = (codes != PAD).sum(dim=1)
        steps = torch.arange(codes.shape[1], device=codes.device)[None, :]
        backwards = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
        last = (lengths - 1).clamp(min=0)
        rows = torch.arange(codes.shape[0], device=codes.device)
        layer_input = self.embedding(codes)
        outputs: list[Tensor] = []
        finals: list[Tensor] = []
        for index, recurrence in enumerate(self.recurrences):
            direction = index % self.directions
            if direction == 0:
                outputs, finals = [], []
            read = layer_input if direction == 0 else _gather_steps(layer_input, backwards)
            states = self._recur(recurrence, read)
            finals.append(states[rows, last])
            outputs.append(states if direction == 0 else _gather_steps(states, backwards))
            if direction == self.directions - 1:
                layer_input = torch.cat(outputs, dim=2)
        return self.fc(torch.cat(finals, dim=1))

    def _recur(self, recurrence: nn.Module, inputs: Tensor) -> Tensor:
        """Every step's hidden state (batch, time, hidden) of a one-layer recurrence."""
        if torch.jit.is_tracing():
            return recurrence(inputs)[0]
        weights = (recurrence.weight_ih_l0, recurrence.weight_hh_l0, recurrence.bias_ih_l0, recurrence.bias_hh_l0)
        hidden = inputs.new_zeros(inputs.shape[0], recurrence.hidden_size)
        if self.kind == "LSTM":
            def step(carry, x):
                h, c = torch.lstm_cell(x, carry, *weights)
                return (h, c), h.clone()

            _, states = scan(step, (hidden, hidden.clone()), inputs.transpose(0, 1))
        else:
            cell = {"GRU": torch.gru_cell, "RNN_TANH": torch.rnn_tanh_cell, "RNN_RELU": torch.rnn_relu_cell}[
                recurrence.mode]

            def step(carry, x):
                h = cell(x, carry, *weights)
                return h, h.clone()

            _, states = scan(step, hidden, inputs.transpose(0, 1))
        return states.transpose(0, 1)


def _gather_steps(values: Tensor, order: Tensor) -> Tensor:
    """values (batch, time, features) with each row's steps taken in `order` (batch, time)."""
    return values.gather(1, order[..., None].expand(-1, -1, values.shape[2]))
