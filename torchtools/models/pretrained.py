"""Pretrained weights files and torchvision classifiers: read them safely, name the architecture, load them.

A weights file is a torchvision-style state_dict, or a checkpoint dict holding one under `model` or
`state_dict`; the `module.` prefix of DataParallel/DDP (and `_orig_mod.` of torch.compile) is stripped.
A Hugging Face Hub folder (config.json beside model.safetensors or pytorch_model.bin, as timm's
save_for_hf writes it) names its timm architecture, classes and preprocessing itself.
Architectures are torchvision's by name, or timm's as `timm/NAME` (timm is an optional extra).
The two loading ways are the course notes' (section 5, "loading part of the weights"):
replace-head loads every tensor into a model with the file's head, then swaps in a new head;
drop-head builds the model for the new classes, deletes the head's keys and loads with strict=False.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.hub
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

from torchtools.core.checkpoints import FORMAT, load_file
from torchtools.core.errors import UserError, first_line, not_a_file

DEFAULT_ARCH = "resnet34"
IMAGENET = "imagenet"  # --weights imagenet: torchvision's published ImageNet weights for --arch
PUBLISHED_NAME = re.compile(r"\w+_Weights\.\w+")  # torchvision's enum names: ResNet34_Weights.IMAGENET1K_V1
IMAGENET_CLASSES = 1000
# Their training forward returns auxiliary logits as well (a namedtuple), which a plain classifier loop can't score.
UNSUPPORTED = ("googlenet", "inception_v3")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
# BatchNorm's buffers: running statistics, not parameters (torchvision counts parameters only).
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
# BatchNorm's step counters: absent from files saved before PyTorch 0.4.1 (torchvision's resnet34-333f7ec4.pth);
# they then start at 0, which changes nothing, so their absence is not reported.
COUNTER = "num_batches_tracked"
TIMM = "timm/"  # --arch timm/efficientnet_lite0: timm.create_model("efficientnet_lite0")
HUB_CONFIG = "config.json"
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# Key names that only timm's models use (torchvision's own are features.*, layer1.*, encoder.layers.*, ...).
TIMM_SIGNS = ("conv_stem.", "blocks.0.", "stages.0.", "patch_embed.", "conv_head.", "head.fc.")


@dataclass
class Weights:
    """A state_dict read from a file, and what the file was."""

    path: Path
    state: dict[str, Tensor]
    kind: str  # "state_dict", "torchtools checkpoint", "checkpoint dict (under 'model')", "pickled ResNet model"
    checkpoint: dict[str, Any] | None = None  # the whole torchtools checkpoint, for its epoch/metrics/config
    published: str | None = None  # torchvision's name for published weights, e.g. "ResNet34_Weights.IMAGENET1K_V1"
    hub: dict[str, Any] | None = None  # a Hub folder's config.json: architecture, num_classes, pretrained_cfg


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


def is_timm(arch: str | None) -> bool:
    return arch is not None and arch.startswith(TIMM)


def timm_module():
    """timm, or one error line naming the extra that installs it."""
    try:
        import timm
    except ImportError:
        raise UserError("timm architectures need timm, which is not installed: pip install 'torchtools[timm]'") \
            from None
    return timm


def check_arch(name: str) -> str:
    if is_timm(name):
        if not timm_module().is_model(name[len(TIMM):]):
            raise UserError(f"unknown timm architecture {name[len(TIMM):]!r}: timm.list_models() lists them "
                            "(e.g. timm/resnet18, timm/efficientnet_lite0, timm/convnext_tiny)")
        return name
    if name not in architectures():
        hint = " (not supported: its training output includes auxiliary logits)" if name in UNSUPPORTED else ""
        raise UserError(f"unknown architecture {name!r}{hint}: use a torchvision classifier such as "
                        "resnet18, resnet34, resnet50, resnet101, resnet152, vgg16, densenet121, efficientnet_b0, "
                        "or timm/NAME for a timm model")
    return name


def build(arch: str, num_classes: int, *, shapes_only: bool = False) -> nn.Module:
    """A torchvision or timm classifier with random weights (nothing downloaded); shapes_only builds it on the
    meta device (no memory, fast)."""
    if shapes_only:
        try:
            with torch.device("meta"):
                return _build(arch, num_classes)
        except (NotImplementedError, RuntimeError):
            pass  # RegNet computes its widths with tensors, which the meta device can't read back
    return _build(arch, num_classes)


def _build(arch: str, num_classes: int) -> nn.Module:
    if is_timm(arch):
        return timm_module().create_model(arch[len(TIMM):], pretrained=False, num_classes=num_classes)
    from torchvision import models

    return models.get_model(arch, weights=None, num_classes=num_classes)


def head_name(model: nn.Module) -> str:
    """The classifier layer: the one timm's pretrained_cfg names (a timm model), else the last module holding
    parameters (fc, classifier.6, heads.head...)."""
    named = getattr(model, "pretrained_cfg", {}).get("classifier")
    if isinstance(named, str) and any(True for _ in model.get_submodule(named).parameters()):
        return named
    return [name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))][-1]


def replace_head(model: nn.Module, arch: str, classes: int) -> None:
    """A new `classes`-way head: timm's own reset_classifier, or torchvision's last layer swapped."""
    if is_timm(arch):
        model.reset_classifier(classes)
    else:
        head = head_name(model)
        model.set_submodule(head, build(arch, classes).get_submodule(head))


def preprocessing(weights: Weights | None, arch: str | None) -> tuple[dict[str, Any], str]:
    """(what the weights say of their input: mean, std, interpolation, crop_pct, input_size; where it is from).
    A Hub folder's pretrained_cfg, else a timm model's; torchvision's say nothing (ImageNet's apply)."""
    if weights is not None and weights.hub is not None:
        return dict(weights.hub.get("pretrained_cfg") or {}), f"{weights.path / HUB_CONFIG}'s pretrained_cfg"
    if is_timm(arch):
        return dict(build(arch, IMAGENET_CLASSES, shapes_only=True).pretrained_cfg), \
            f"timm's pretrained_cfg of {arch[len(TIMM):]}"
    return {}, ""


def in_head(key: str, head: str) -> bool:
    return key.startswith(f"{head}.")


def read_weights(source: str | Path, *, arch: str | None = None, trust_pickle: bool = False) -> Weights:
    """The state_dict of a weights file, or of torchvision's published weights named by `source`.

    A file: `.safetensors` through safetensors' own loader (no pickle at all), anything else with
    torch.load(weights_only=True) unless trusted. A name (when no such file exists): `imagenet` for
    `arch`'s ImageNet weights, or a torchvision enum name such as `ResNet34_Weights.IMAGENET1K_V1`,
    fetched into torch.hub's cache and hash-checked there (see `published`).
    """
    path = Path(source)
    if not path.exists() and is_published_name(str(source)):
        path, name = published(str(source), arch)
        return dataclasses.replace(read_weights(path), published=name)
    if path.is_dir():
        return _read_hub_folder(path, trust_pickle=trust_pickle)
    loaded = _read_safetensors(path) if path.suffix.lower() == ".safetensors" else \
        load_file(path, trust_pickle=trust_pickle)
    checkpoint = None
    if isinstance(loaded, nn.Module):
        state, kind = loaded.state_dict(), f"pickled {type(loaded).__name__} model"
    elif isinstance(loaded, Mapping) and _all_tensors(loaded):
        state, kind = loaded, "safetensors state_dict" if path.suffix.lower() == ".safetensors" else "state_dict"
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


def _read_hub_folder(folder: Path, *, trust_pickle: bool) -> Weights:
    """A Hub folder: config.json (its timm architecture, classes, labels, pretrained_cfg) and its weights file."""
    config_path = folder / HUB_CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder} is a folder without {HUB_CONFIG}: --weights takes a weights file, or a Hugging "
                        f"Face Hub folder ({HUB_CONFIG} beside {' or '.join(HUB_WEIGHTS)})") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{config_path} is not readable JSON: {first_line(error)}") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise UserError(f"{config_path} names no architecture (a timm Hub folder's config.json has "
                        "\"architecture\": \"NAME\")")
    if not isinstance(config.get("pretrained_cfg", {}), dict):
        raise UserError(f"{config_path}: its pretrained_cfg is not an object")
    file = next((folder / name for name in HUB_WEIGHTS if (folder / name).is_file()), None)
    if file is None:
        raise UserError(f"{folder} holds {HUB_CONFIG} but no weights: expected {' or '.join(HUB_WEIGHTS)}")
    read = read_weights(file, trust_pickle=trust_pickle)
    return Weights(folder, read.state, f"Hub folder ({file.name})", hub=config)


def hub_arch(weights: Weights) -> str:
    return TIMM + weights.hub["architecture"]


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise not_a_file(path)
    try:
        return load_safetensors(str(path))
    except Exception as error:  # SafetensorError for a bad header, offsets or dtype; others for odd files
        text = str(error).strip()
        raise UserError(f"{path} is not a readable safetensors file: "
                        f"{text.splitlines()[0] if text else type(error).__name__}") from None


def is_published_name(text: str) -> bool:
    return text.lower() == IMAGENET or PUBLISHED_NAME.fullmatch(text) is not None


def imagenet_meaning(value: str) -> str:
    """`imagenet` where `value` is it in any case, or the file in torch.hub's cache that --weights imagenet reads
    for some architecture (a checkpoint saved before imagenet was kept as typed holds that path: --arch, saved
    too, says whose); `value` itself otherwise. An enum name stays itself (refused as differing from imagenet):
    which architecture's imagenet is meant is --arch, which this comparison does not see."""
    if value.lower() == IMAGENET:
        return IMAGENET
    if os.path.dirname(value) == os.path.realpath(Path(torch.hub.get_dir()) / "checkpoints") and \
            any(os.path.basename(value) == _file_name(_imagenet_entry(arch)) for arch in architectures()):
        return IMAGENET
    return value


def _imagenet_entry(arch: str):
    """`arch`'s IMAGENET1K_V1 (what `pretrained=True` gave), or its DEFAULT where it has no V1."""
    from torchvision import models

    enum = models.get_model_weights(arch)
    return getattr(enum, "IMAGENET1K_V1", None) or enum.DEFAULT


def _file_name(entry) -> str:
    """The name torch.hub saves published weights under (resnet18-f37072fd.pth)."""
    return Path(urllib.parse.urlparse(entry.url).path).name


def published(name: str, arch: str | None) -> tuple[Path, str]:
    """(the file in torch.hub's cache, torchvision's name) of the published weights `name` names.

    `imagenet` is `arch`'s IMAGENET1K_V1 (what `pretrained=True` gave; trained with the resize 256 / crop 224
    torchtools applies), or its DEFAULT where it has no V1. An enum name must be `arch`'s when one is given.
    The file is fetched once into TORCH_HOME/hub/checkpoints, and its SHA-256 is checked against the prefix
    in its name (resnet18-f37072fd.pth) on the download and on every later use.
    """
    entry, label = _published_entry(name, arch)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = folder / _file_name(entry)
    expected = torch.hub.HASH_REGEX.search(file.name)
    prefix = expected.group(1) if expected else None
    if not file.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(entry.url, str(file), hash_prefix=prefix, progress=False)
        except OSError as error:  # urllib's URLError included: offline, refused, not found
            reason = getattr(error, "reason", None) or error.strerror or error
            raise UserError(f"cannot fetch {label} from {entry.url} ({reason}); offline, download {file.name} "
                            f"there by other means and put it in {folder}") from None
        except RuntimeError as error:  # the download's hash differs from the name's
            raise UserError(f"{entry.url} does not match its published SHA-256: {error}") from None
    elif prefix and not hashlib.sha256(file.read_bytes()).hexdigest().startswith(prefix):
        raise UserError(f"{file} does not match its published SHA-256 (which starts {prefix}): a partial or altered "
                        "copy; delete it to fetch it again")
    return file, label


def _published_entry(name: str, arch: str | None):
    from torchvision import models

    if is_timm(arch):
        raise UserError(f"--weights {name} names torchvision's published weights, which {arch} has none of: pass a "
                        "weights file or Hub folder (timm's weights are not downloaded here)")
    if name.lower() == IMAGENET:
        entry = _imagenet_entry(check_arch(arch or DEFAULT_ARCH))
    else:
        try:
            entry = models.get_weight(name)
        except (ValueError, KeyError, AttributeError):
            raise UserError(f"--weights {name}: no such torchvision weights (names look like "
                            "ResNet34_Weights.IMAGENET1K_V1; a file of that name was not found either)") from None
        owner = next((candidate for candidate in architectures()
                      if models.get_model_weights(candidate) is type(entry)), None)
        if owner is None:
            raise UserError(f"--weights {name}: not the weights of a torchvision classifier")
        if arch is not None and arch != owner:
            raise UserError(f"--weights {name} are {owner}'s weights, not --arch {arch}'s")
    return entry, f"{type(entry).__name__}.{entry.name}"


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


def file_classes(state: Mapping[str, Tensor], arch: str) -> int:
    """The head size of a state_dict known to fit `arch`."""
    return state[f"{head_name(build(arch, IMAGENET_CLASSES, shapes_only=True))}.weight"].shape[0]


def infer_arch(state: Mapping[str, Tensor]) -> list[str]:
    """The torchvision classifiers whose state_dict has exactly these keys and shapes (any head size).

    Any weight of two or more dimensions may be the head (key order is no guide: safetensors files keep
    their keys sorted). For each, the parameter count the file would have with a 1000-class head picks
    candidates from torchvision's published counts (no model is built); each is confirmed on the meta device.
    """
    counts = _published_counts()
    total = parameter_count(state)
    found: dict[str, None] = {}
    for key, value in state.items():
        if not (key.endswith(".weight") and value.ndim >= 2 and value.is_floating_point()):
            continue
        per_class = value[0].numel() + (1 if f"{key[:-len('.weight')]}.bias" in state else 0)
        for arch in counts.get(total + (IMAGENET_CLASSES - value.shape[0]) * per_class, ()):
            if arch not in found and _same_shapes(state, build(arch, value.shape[0], shapes_only=True).state_dict()):
                found[arch] = None
    return list(found)


@cache
def _published_counts() -> dict[int, tuple[str, ...]]:
    """torchvision's published parameter counts (1000 classes) -> the architectures that have them."""
    from torchvision import models

    counts: dict[int, list[str]] = {}
    for arch in architectures():
        for count in dict.fromkeys(entry.meta["num_params"] for entry in models.get_model_weights(arch)):
            counts.setdefault(count, []).append(arch)
    return {count: tuple(archs) for count, archs in counts.items()}


def _same_shapes(state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> bool:
    keys = {key for key in expected if not key.endswith(COUNTER)}
    return keys <= set(state) and all(state[key].shape == expected[key].shape for key in keys) \
        and set(state) <= set(expected)


def resolve_arch(weights: Weights, arch: str | None) -> tuple[str, bool]:
    """(architecture, inferred?): --arch when given, else a Hub folder's, else the one torchvision classifier
    the file fits. A file that fits none is an error saying what its keys look like."""
    if arch is not None:
        return check_arch(arch), False
    if weights.hub is not None:
        return check_arch(hub_arch(weights)), True
    matches = infer_arch(weights.state)
    if len(matches) == 1:
        return matches[0], True
    if len(matches) > 1:
        raise UserError(f"{weights.path} fits several architectures ({', '.join(matches)}): pass --arch")
    signs = sorted({sign for key in weights.state for sign in TIMM_SIGNS if key.startswith(sign)})
    if signs:
        raise UserError(f"{weights.path} has timm's key names ({', '.join(sign + '*' for sign in signs)}), which no "
                        "torchvision classifier has: pass --arch timm/NAME (timm's name of the model, e.g. "
                        "timm/efficientnet_lite0; pip install 'torchtools[timm]')")
    nearest = nearest_arch(weights.state)
    raise UserError(f"{weights.path} fits no torchvision classifier's keys and shapes"
                    f"{f'; the nearest is {nearest}' if nearest else ''}: pass the file's --arch (torchvision's "
                    "name, or timm/NAME for a timm model)")


def nearest_arch(state: Mapping[str, Tensor]) -> str | None:
    """The torchvision classifier sharing the most (key, shape) pairs with the file, described; built on the meta
    device only for architectures of a parameter count within a fifth of the file's (cheap)."""
    total = parameter_count(state)
    best, best_score = None, 0
    for count, archs in _published_counts().items():
        if not 0.8 * total <= count <= 1.25 * total:
            continue
        for arch in archs:
            expected = build(arch, IMAGENET_CLASSES, shapes_only=True).state_dict()
            score = sum(1 for key, value in state.items() if key in expected and expected[key].shape == value.shape)
            if score > best_score:
                best, best_score, size = arch, score, len(expected)
    return f"{best} ({best_score} of its {size} tensors match)" if best else None


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
        replace_head(model, arch, classes)
    report = LoadReport(arch, head, file_classes, [key for key in missing if not key.endswith(COUNTER)],
                        list(unexpected))
    return model, report


def check_fits(weights: Weights, arch: str) -> None:
    """The file against `arch` with the file's own head size, on the meta device: before any picture is read."""
    head = head_name(build(arch, IMAGENET_CLASSES, shapes_only=True))
    head_weight = weights.state.get(f"{head}.weight")
    expected = build(arch, head_weight.shape[0] if head_weight is not None else IMAGENET_CLASSES, shapes_only=True)
    _check_fits(weights.path, arch, weights.state, expected.state_dict())


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
