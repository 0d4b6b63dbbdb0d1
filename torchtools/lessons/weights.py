"""What a weights file holds: per-tensor statistics, a comparison with an architecture, differences between files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from torchtools.core.errors import UserError
from torchtools.models import pretrained


def select(state: Mapping[str, Tensor], pattern: str | None) -> dict[str, Tensor]:
    """The tensors whose names match the --filter regular expression (all without one)."""
    if pattern is None:
        return dict(state)
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise UserError(f"--filter {pattern!r} is not a regular expression: {error}") from None
    return {key: value for key, value in state.items() if regex.search(key)}


def tensor_row(name: str, value: Tensor) -> dict[str, Any]:
    """name, shape, dtype, element count, buffer or not, mean/std/min/max and the share of exact zeros."""
    values = value.detach().double() if value.numel() else None
    return {
        "name": name, "shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."),
        "params": value.numel(), "buffer": pretrained.is_buffer(name, value),
        "mean": values.mean().item() if values is not None else None,
        "std": values.std().item() if value.numel() > 1 else None,
        "min": values.min().item() if values is not None else None,
        "max": values.max().item() if values is not None else None,
        "zeros": (values == 0).double().mean().item() if values is not None else None,
    }


def totals(state: Mapping[str, Tensor]) -> dict[str, int]:
    return {
        "tensors": len(state),
        "params": pretrained.parameter_count(state),
        "buffer_values": sum(value.numel() for key, value in state.items() if pretrained.is_buffer(key, value)),
        "bytes": sum(value.numel() * value.element_size() for value in state.values()),
    }


def describe(weights: pretrained.Weights) -> tuple[str, str | None]:
    """(what the file is, the torchvision architecture it fits or None)."""
    matches = pretrained.infer_arch(weights.state)
    arch = matches[0] if len(matches) == 1 else None
    kind = weights.kind
    if weights.checkpoint is not None:
        kind += f" (torchtools {weights.checkpoint.get('command')}, epoch {weights.checkpoint.get('epoch')})"
    elif arch is not None and weights.kind in ("state_dict", "safetensors state_dict"):
        kind = weights.published or "torchvision weights"
        kind += " (safetensors)" if weights.kind.startswith("safetensors") else ""
    if arch is not None:
        kind += f": {arch}, {pretrained.file_classes(weights.state, arch)} classes"
    return kind, arch


def compare(state: Mapping[str, Tensor], arch: str, classes: int) -> dict[str, Any]:
    """Keys and shapes of the file against a freshly built `arch` with `classes` outputs."""
    expected = pretrained.build(pretrained.check_arch(arch), classes, shapes_only=True).state_dict()
    common = [key for key in state if key in expected]
    mismatched = [{"name": key, "file_shape": list(state[key].shape), "arch_shape": list(expected[key].shape)}
                  for key in common if state[key].shape != expected[key].shape]
    return {
        "arch": arch, "classes": classes,
        "matching": len(common) - len(mismatched),
        "missing": [key for key in expected if key not in state and not key.endswith(pretrained.COUNTER)],
        "unexpected": [key for key in state if key not in expected],
        "mismatched": mismatched,
    }


def diff(state: Mapping[str, Tensor], other: Mapping[str, Tensor]) -> dict[str, Any]:
    """Largest absolute difference of each tensor present in both files with the same shape."""
    same_shape = [key for key in state if key in other and state[key].shape == other[key].shape]
    return {
        "tensors": [{"name": key, "max_abs_diff": (state[key].double() - other[key].double()).abs().max().item()
                     if state[key].numel() else 0.0} for key in same_shape],
        "mismatched": [key for key in state if key in other and state[key].shape != other[key].shape],
        "only_in_file": [key for key in state if key not in other],
        "only_in_other": [key for key in other if key not in state],
    }


def write_histograms(writer, state: Mapping[str, Tensor]) -> int:
    """One TensorBoard histogram per floating-point tensor; returns how many were written."""
    written = 0
    for name, value in state.items():
        if value.is_floating_point() and value.numel():
            writer.add_histogram(name, value.detach().float(), 0)
            written += 1
    writer.flush()
    return written
