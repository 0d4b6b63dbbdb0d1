"""A model summary as Keras' model.summary and torchinfo give it: each layer, its output shape, its parameters
and its multiply-adds per sample, with the totals; found by one forward pass with hooks on every leaf module.

Multiply-adds count the weight matrices' products (Linear, convolutions, recurrent cells): each weight
element is used once per output position. Lookups (Embedding), norms and activations count none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchtools.core.engine import forward
from torchtools.core.output import compact, print_table, say

NO_PRODUCTS = (nn.Embedding, nn.EmbeddingBag)


@torch.no_grad()
def model_summary(model: nn.Module, sample) -> dict[str, Any]:
    """The summary of `model` on `sample` (an input batch, or a tuple of them), per sample of that batch."""
    rows, hooks = [], []
    batch = (sample[0] if isinstance(sample, tuple) else sample).shape[0]

    def record(name: str):
        def hook(module, inputs, output):
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            packed = hasattr(tensor, "batch_sizes")
            tensor = getattr(tensor, "data", tensor)  # a PackedSequence's data: one row per (step, sample)
            own = list(module.parameters(recurse=False))
            shape = _per_sample(list(tensor.shape), batch, packed) if isinstance(tensor, torch.Tensor) else []
            rows.append({"name": name, "type": type(module).__name__, "output_shape": shape,
                         "params": sum(parameter.numel() for parameter in own),
                         "mult_adds": _mult_adds(module, own, tensor, batch)})
        return hook

    leaves = [(name, module) for name, module in model.named_modules() if name and
              (not list(module.children()) or list(module.parameters(recurse=False)))]
    for name, module in leaves:
        hooks.append(module.register_forward_hook(record(name)))
    training = model.training
    model.eval()
    try:
        forward(model, sample)
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    seen = {row["name"] for row in rows}
    for name, module in leaves:  # its weights used by a parent's own code, not called as a module: no hook ran
        own = sum(parameter.numel() for parameter in module.parameters(recurse=False))
        if name not in seen and own:
            rows.append({"name": name, "type": type(module).__name__, "output_shape": [], "params": own,
                         "mult_adds": 0})
    parameters = list(model.parameters())
    return {"layers": rows, "total_params": sum(parameter.numel() for parameter in parameters),
            "trainable_params": sum(parameter.numel() for parameter in parameters if parameter.requires_grad),
            "mult_adds": sum(row["mult_adds"] for row in rows)}


def _mult_adds(module: nn.Module, own: list, output, batch: int) -> int:
    if isinstance(module, NO_PRODUCTS) or not isinstance(output, torch.Tensor) or output.dim() == 0:
        return 0
    weights = sum(parameter.numel() for parameter in own if parameter.dim() >= 2)
    if not weights:
        return 0
    per_sample = output.numel() / max(batch, 1)
    channels = output.shape[1] if isinstance(module, nn.modules.conv._ConvNd) else output.shape[-1]
    # Output positions (pixels, time steps) per sample; each uses every weight once.
    return int(weights * per_sample / channels)


def print_summary(summary: dict[str, Any], title: str) -> None:
    """The summary as a table that fits the terminal, and its totals on one line."""
    rows = [(row["name"], row["type"], "x".join(map(str, row["output_shape"])) or "-", row["params"],
             compact(row["mult_adds"]) if row["mult_adds"] else "-") for row in summary["layers"]]
    print_table(title, ["layer", "type", "output", "params", "mult-adds"], rows)
    say(f"{summary['total_params']:,} parameters ({summary['trainable_params']:,} trainable), "
        f"{compact(summary['mult_adds'])} multiply-adds per sample")


def _per_sample(dims: list[int], batch: int, packed: bool) -> list[int]:
    """An output's shape without its batch dimension: the first of the batch's size (a time-first recurrent
    input is (time, batch, ...)), else the first; a packed sequence's rows are steps, so its row size."""
    if packed or not dims:
        return dims[1:]
    index = dims.index(batch) if batch in dims else 0
    return dims[:index] + dims[index + 1:]


def summarise(model: nn.Module, sample, what: str) -> dict[str, Any]:
    """Print the summary of the model a run trains, and return it for the JSON summary (`model_summary`)."""
    summary = model_summary(model, sample)
    print_summary(summary, f"model: {what}")
    return summary
