"""`--mode freeze` without recomputing the frozen backbone: its features computed once per picture.

With the backbone frozen, the only thing training changes is the head, and the head sees the backbone's
output: the input of the head module. For a picture shown the same way every epoch, that input is the
same every epoch, so it can be computed once and the head trained on it (a Linear on 512 numbers a
picture for resnet18/34, where the backbone costs 1.8-3.6 GFLOP).

When that holds:
- held-out pictures: always (their transform is fixed: resize, centre crop, normalise), so evaluation
  after each epoch needs only the head;
- training pictures: only without augmentation (transfer's `--augment none`). Random crops and flips show
  each picture differently every epoch, so with them the backbone must run on each epoch's views
  (`precomputable` says why).

The features are the backbone's in evaluation mode (BatchNorm on its running statistics, dropout off),
which is what evaluation of the full model uses, so head(features) gives the full model's outputs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

AUGMENTS_WITHOUT_RANDOMNESS = ("none",)


def precomputable(augment: str) -> tuple[bool, str]:
    """(can the training pictures' features be computed once?, why) for an ImageFormat.augment."""
    if augment in AUGMENTS_WITHOUT_RANDOMNESS:
        return True, "no augmentation: each training picture gives the same features every epoch"
    return False, (f"augmentation {augment!r} shows each picture differently every epoch, so the frozen backbone "
                   "runs on every epoch's views; held-out features are still computed once")


@torch.no_grad()
def head_inputs(model: nn.Module, head: str, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device
                ) -> tuple[Tensor, Tensor]:
    """(features, targets): what the `head` module of `model` receives for each input of `batches`, in
    order, computed once in evaluation mode, as fp32 tensors on `device`.

    The first batch is checked: the head applied to its captured input must give the model's own output
    (the head is the model's last step), else a ValueError says the architecture does not fit.
    """
    module = model.get_submodule(head)
    captured: list[Tensor] = []
    hook = module.register_forward_pre_hook(lambda _module, args: captured.append(args[0].detach().float()))
    was_training = model.training
    model.eval()
    features, targets = [], []
    try:
        for inputs, labels in batches:
            outputs = model(inputs.to(device, non_blocking=True))
            if not features:
                _check_head_is_last(module, captured[-1], outputs, head)
            features.append(captured.pop().flatten(1))
            targets.append(labels.to(device, non_blocking=True))
    finally:
        hook.remove()
        model.train(was_training)
    if not features:
        raise ValueError("no batches to compute features of")
    return torch.cat(features), torch.cat(targets)


def _check_head_is_last(module: nn.Module, captured: Tensor, outputs: Tensor, head: str) -> None:
    if captured.shape[0] != outputs.shape[0] or not torch.allclose(module(captured), outputs.float(),
                                                                   rtol=1e-4, atol=1e-5):
        raise ValueError(f"the model's output is not {head}(its input): its features cannot stand in for it")


class OnFeatures(nn.Module):
    """The head alone, taking precomputed features: what trains in freeze mode on head_inputs' features.

    It holds the model's own head module (not a copy), so training it trains the full model's head and the
    full model's state_dict is the checkpoint, as without precomputing.
    """

    def __init__(self, model: nn.Module, head: str):
        super().__init__()
        self.head = model.get_submodule(head)

    def forward(self, features: Tensor) -> Tensor:
        return self.head(features)


class FrozenBackbone(nn.Module):
    """A model in freeze mode: it takes pictures (run through the frozen backbone, then the head) or the
    backbone's precomputed features (2-D: the head alone), so one model trains on augmented pictures
    and is evaluated on features computed once, or trains on features too.

    The backbone stays in evaluation mode whatever `train()` says: BatchNorm on its pretrained running
    statistics and dropout off, so the features the head trains on are the ones it is evaluated on, and
    precomputed features equal recomputed ones. Its state_dict is the wrapped model's, so checkpoints,
    --resume and export see the same keys as without the wrapper.
    """

    def __init__(self, model: nn.Module, head: str):
        super().__init__()
        self.model = model
        self.head = OnFeatures(model, head)

    def train(self, mode: bool = True) -> FrozenBackbone:
        self.training = mode
        self.model.eval()
        self.head.train(mode)
        return self

    def forward(self, inputs: Tensor) -> Tensor:
        return self.head(inputs) if inputs.dim() == 2 else self.model(inputs)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)
