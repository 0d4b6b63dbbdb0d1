"""Pretrained weights files and torchvision classifiers: read them safely, name the architecture, load them.

A weights file is a torchvision-style state_dict, or a checkpoint dict holding one under `model` or
`state_dict`; the `module.` prefix of DataParallel/DDP (and `_orig_mod.` of torch.compile) is stripped.
The two loading ways are the course notes' (section 5, "loading part of the weights"):
replace-head loads every tensor into a model with the file's head, then swaps in a new head;
drop-head builds the model for the new classes, deletes the head's keys and loads with strict=False.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchtools.core.checkpoints import FORMAT, load_file
from torchtools.core.errors import UserError, first_line
from torchtools.core.output import warn

DEFAULT_ARCH = "resnet34"
IMAGENET_CLASSES = 1000
# Their training forward returns auxiliary logits as well (a namedtuple), which a plain classifier loop can't score.
UNSUPPORTED = ("googlenet", "inception_v3")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
# BatchNorm's buffers: running statistics, not parameters (torchvision counts parameters only).
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
# BatchNorm's step counters: absent from files saved before PyTorch 0.4.1 (torchvision's resnet34-333f7ec4.pth);
# they then start at 0, which changes nothing, so their absence is not reported.
COUNTER = "num_batches_tracked"


@dataclass
class Weights:
    """A state_dict read from a file, and what the file was."""

    path: Path
    state: dict[str, Tensor]
    kind: str  # "state_dict", "torchtools checkpoint", "checkpoint dict (under 'model')", "pickled ResNet model"
    checkpoint: dict[str, Any] | None = None  # the whole torchtools checkpoint, for its epoch/metrics/config


@dataclass
class LoadReport:
    arch: str
    head: str  # the replaced or re-initialised module, e.g. "fc" or "classifier.6"
    file_classes: int | None  # the head size in the file
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)


@cache
def architectures() -> tuple[str, ...]:
    from torchvision import models

    return tuple(models.list_models(module=models, exclude=list(UNSUPPORTED)))


def check_arch(name: str) -> str:
    if name not in architectures():
        hint = " (not supported: its training output includes auxiliary logits)" if name in UNSUPPORTED else ""
        raise UserError(f"unknown architecture {name!r}{hint}: use a torchvision classifier such as "
                        "resnet18, resnet34, resnet50, resnet101, resnet152, vgg16, densenet121, efficientnet_b0")
    return name


def build(arch: str, num_classes: int, *, shapes_only: bool = False) -> nn.Module:
    """A torchvision classifier with random weights; shapes_only builds it on the meta device (no memory, fast)."""
    from torchvision import models

    if shapes_only:
        try:
            with torch.device("meta"):
                return models.get_model(arch, weights=None, num_classes=num_classes)
        except NotImplementedError:
            pass  # RegNet computes its widths with tensors, which the meta device can't read back
    return models.get_model(arch, weights=None, num_classes=num_classes)


def head_name(model: nn.Module) -> str:
    """The classifier layer: the last module holding parameters (fc, classifier.6, heads.head...)."""
    return [name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))][-1]


def in_head(key: str, head: str) -> bool:
    return key.startswith(f"{head}.")


def read_weights(path: Path, *, trust_pickle: bool = False) -> Weights:
    """Load a weights file (weights_only unless trusted) and find the state_dict in it."""
    path = Path(path)
    loaded = load_file(path, trust_pickle=trust_pickle)
    checkpoint = None
    if isinstance(loaded, nn.Module):
        state, kind = loaded.state_dict(), f"pickled {type(loaded).__name__} model"
    elif isinstance(loaded, Mapping) and _all_tensors(loaded):
        state, kind = loaded, "state_dict"
    elif isinstance(loaded, Mapping) and (key := _state_dict_key(loaded)) is not None:
        state = loaded[key]
        if loaded.get("format") == FORMAT:
            kind, checkpoint = "torchtools checkpoint", dict(loaded)
        else:
            kind = f"checkpoint dict (state_dict under {key!r})"
    else:
        raise UserError(f"{path} holds no state_dict: expected a dict of tensors, or a dict holding one "
                        "under 'model' or 'state_dict'")
    return Weights(path, strip_wrappers(state), kind, checkpoint)


def _all_tensors(mapping: Mapping) -> bool:
    return bool(mapping) and all(isinstance(value, Tensor) for value in mapping.values())


def _state_dict_key(mapping: Mapping) -> str | None:
    for key in ("model", "state_dict"):
        if isinstance(mapping.get(key), Mapping) and _all_tensors(mapping[key]):
            return key
    return None


def strip_wrappers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`module.layer1.0.conv1.weight` -> `layer1.0.conv1.weight` (any depth of wrapping)."""
    stripped = OrderedDict()
    for key, value in state.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        stripped[key] = value
    return stripped


def is_buffer(key: str, value: Tensor) -> bool:
    """A name-based guess that holds for torchvision classifiers: BatchNorm statistics and integer tensors."""
    return key.endswith(BUFFER_SUFFIXES) or not (value.is_floating_point() or value.is_complex())


def parameter_count(state: Mapping[str, Tensor]) -> int:
    return sum(value.numel() for key, value in state.items() if not is_buffer(key, value))


def file_head(state: Mapping[str, Tensor]) -> tuple[str, int] | None:
    """(module name, classes) of the file's head: its last weight of two or more dimensions."""
    for key in reversed(list(state)):
        value = state[key]
        if key.endswith(".weight") and value.ndim >= 2 and value.is_floating_point():
            return key[:-len(".weight")], value.shape[0]
    return None


def infer_arch(state: Mapping[str, Tensor]) -> list[str]:
    """The torchvision classifiers whose state_dict has exactly these keys and shapes (any head size).

    Candidates are picked by parameter count against torchvision's published counts (no model is built),
    then each is confirmed on the meta device.
    """
    from torchvision import models

    head = file_head(state)
    if head is None:
        return []
    name, classes = head
    per_class = state[f"{name}.weight"][0].numel() + (1 if f"{name}.bias" in state else 0)
    imagenet_count = parameter_count(state) + (IMAGENET_CLASSES - classes) * per_class
    candidates = [arch for arch in architectures()
                  if imagenet_count in {entry.meta["num_params"] for entry in models.get_model_weights(arch)}]
    return [arch for arch in candidates if _same_shapes(state, build(arch, classes, shapes_only=True).state_dict())]


def _same_shapes(state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> bool:
    keys = {key for key in expected if not key.endswith(COUNTER)}
    return keys <= set(state) and all(state[key].shape == expected[key].shape for key in keys) \
        and set(state) <= set(expected)


def resolve_arch(weights: Weights, arch: str | None) -> tuple[str, bool]:
    """(architecture, inferred?): --arch when given, else the one torchvision classifier the file fits."""
    if arch is not None:
        return check_arch(arch), False
    matches = infer_arch(weights.state)
    if len(matches) == 1:
        return matches[0], True
    if len(matches) > 1:
        raise UserError(f"{weights.path} fits several architectures ({', '.join(matches)}): pass --arch")
    warn(f"could not infer the architecture of {weights.path}; trying {DEFAULT_ARCH} (pass --arch to choose)")
    return DEFAULT_ARCH, False


def load_pretrained(weights: Weights, arch: str, classes: int, *, drop_head: bool) -> tuple[nn.Module, LoadReport]:
    """Build `arch` for `classes` outputs from the file's weights, the course's option 1 or option 2."""
    head = head_name(build(arch, classes, shapes_only=True))
    state = dict(weights.state)
    head_weight = state.get(f"{head}.weight")
    file_classes = head_weight.shape[0] if head_weight is not None else None
    if drop_head:
        model = build(arch, classes)
        state = {key: value for key, value in state.items() if not in_head(key, head)}
    else:
        model = build(arch, file_classes or IMAGENET_CLASSES)
    _check_fits(weights.path, arch, state, model.state_dict())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if not drop_head:
        model.set_submodule(head, build(arch, classes).get_submodule(head))
    report = LoadReport(arch, head, file_classes, [key for key in missing if not key.endswith(COUNTER)],
                        list(unexpected))
    return model, report


def _check_fits(path: Path, arch: str, state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    """A shape mismatch outside the head is an error naming the tensors; so is a file sharing no key at all."""
    mismatched = [f"{key} (file {list(value.shape)}, {arch} {list(expected[key].shape)})"
                  for key, value in state.items() if key in expected and value.shape != expected[key].shape]
    if mismatched:
        shown = "; ".join(mismatched[:5]) + (f"; and {len(mismatched) - 5} more" if len(mismatched) > 5 else "")
        raise UserError(f"{path} does not fit {arch}: {len(mismatched)} tensor shape(s) differ: {shown}. "
                        "Pass the file's --arch")
    if not set(state) & set(expected):
        raise UserError(f"{path} shares no tensor name with {arch} (e.g. {next(iter(state), 'none')!r}): "
                        "pass the file's --arch")


def freeze_backbone(model: nn.Module, head: str) -> int:
    """Train only the head (the fixed-feature-extractor variant); returns the trainable parameter count.

    Frozen BatchNorm layers also keep their running statistics (momentum 0), so the features the head
    learns on are exactly the pretrained ones at evaluation time.
    """
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(in_head(name, head))
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not in_head(name, head):
            module.momentum = 0.0
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def check_input_size(model: nn.Module, arch: str, size: int) -> None:
    """One forward pass of a blank image, so a size the architecture can't take fails before training."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except (RuntimeError, AssertionError, ValueError) as error:
        reason = first_line(error)
        raise UserError(f"{arch} cannot take {size}x{size} images ({reason}): choose another --image-size") from None


def key_summary(keys: list[str], shown: int = 10) -> str:
    """'2 (fc.weight, fc.bias)': the count, then at most `shown` names (the --json summary has them all)."""
    if not keys:
        return "0"
    more = f", ... {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)} ({', '.join(keys[:shown])}{more})"
