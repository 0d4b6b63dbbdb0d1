"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's lr_find).

Train for up to STEPS batches while the learning rate grows exponentially from START to END; smooth the
loss with a debiased moving average; stop once it diverges (DIVERGED times its minimum, or not finite).
The suggestion is the rate where the smoothed loss falls fastest (per decade of lr) before its minimum;
the minimum's rate / 10 is reported beside it. The model, the optimizer and the random generators are put
back as they were: the test leaves no trained weights behind and does not change the training after it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch

from torchtools.core import plots
from torchtools.core.engine import forward, to_device
from torchtools.core.errors import UserError
from torchtools.core.optim import make_optimizer
from torchtools.core.options import AUTO
from torchtools.core.output import say

START, END = 1e-7, 10.0
STEPS = 100
SMOOTHING = 0.98  # fastai's beta
DIVERGED = 4.0
SKIP_START = 5  # the first smoothed values rest on few losses: left out of the steepest-descent search


@dataclass
class LrFinding:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggested: float  # steepest descent
    minimum: float  # the lr of the smallest smoothed loss
    reason: str

    def summary(self) -> dict:
        return {"suggested_lr": self.suggested, "lr_at_minimum": self.minimum, "steps": len(self.lrs),
                "reason": self.reason}


def find_lr(model, objective, optimizer, batches, run, *, steps: int = STEPS, start: float = START,
            end: float = END) -> LrFinding:
    """Run the range test on `batches` (cycled if shorter than `steps`); say and return the suggestion."""
    model_state = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    devices = [run.device.index or 0] if run.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            lrs, losses = _sweep(model, objective, optimizer, batches, run, steps, start, end)
    finally:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
    finding = suggest(lrs, losses)
    say(f"lr finder: {len(lrs)} steps from {start:.0e} to {lrs[-1]:.2e}; {finding.reason}")
    return finding


def _sweep(model, objective, optimizer, batches, run, steps: int, start: float, end: float):
    model.train()
    factor = (end / start) ** (1 / max(steps - 1, 1))
    amp_dtype = run.amp_dtype if run.amp_dtype == torch.bfloat16 else None  # fp16 would need a GradScaler
    lrs, losses, average, best = [], [], 0.0, math.inf
    step = 0
    while step < steps:
        before = step
        for inputs, targets in batches:
            lr = start * factor ** step
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs, targets = to_device(inputs, run.device), targets.to(run.device)
            with torch.autocast(run.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = objective.loss(forward(model, inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            step += 1
            if not math.isfinite(value):
                return lrs, losses
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            smoothed = average / (1 - SMOOTHING ** step)
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if smoothed > DIVERGED * best or step >= steps:
                return lrs, losses
        if step == before:  # no batches at all: nothing to cycle
            break
    return lrs, losses


def suggest(lrs: list[float], losses: list[float]) -> LrFinding:
    """The steepest descent of the smoothed loss against log10(lr), searched before the loss's minimum."""
    if len(lrs) < 3:
        raise UserError(f"the lr finder got {len(lrs)} usable step(s): the loss was not finite from the start; "
                        "check the data, or pass --lr")
    lowest = min(range(len(losses)), key=losses.__getitem__)
    first = min(SKIP_START, max(lowest - 2, 0))
    window = range(first, max(lowest, first + 2) + 1)
    slopes = {index: _slope(lrs, losses, index) for index in window if 0 < index < len(lrs) - 1}
    steepest = min(slopes, key=slopes.get) if slopes else lowest
    suggested, minimum = lrs[steepest], lrs[lowest]
    reason = (f"suggested lr {suggested:.2e}: the smoothed loss falls fastest there ({slopes.get(steepest, 0):.3g} "
              f"per decade); its minimum {losses[lowest]:.4g} is at lr {minimum:.2e} (minimum / 10: "
              f"{minimum / 10:.2e})")
    return LrFinding(lrs, losses, suggested, minimum, reason)


def _slope(lrs: list[float], losses: list[float], index: int) -> float:
    """The central difference of the loss per decade of lr at `index`."""
    span = math.log10(lrs[index + 1]) - math.log10(lrs[index - 1])
    return (losses[index + 1] - losses[index - 1]) / span


def run_finder(run, model, objective, make_batches, parameters) -> LrFinding | None:
    """The range test where the run asks for it (--find-lr, --lr auto), on an optimizer of its own and on batches
    of its own (`make_batches()`: a twin of training's, so training's shuffle and augmentation draws are not
    used up by it); lr_find.png goes into --report. Under --lr auto the suggestion settles the run's lr
    (`Run.settle_lr`) before anything trains."""
    if not run.finds_lr:
        return None
    auto = run.config.lr == AUTO
    config = dataclasses.replace(run.config, lr=START) if auto else run.config
    finding = find_lr(model, objective, make_optimizer(config, list(parameters)), make_batches(), run)
    if run.report is not None:
        plots.lr_find(run.report.path("lr_find.png"), finding.lrs, finding.losses, suggested=finding.suggested,
                      minimum=finding.minimum)
    if auto:
        run.settle_lr(finding.suggested)
        say(f"--lr auto: training at lr {finding.suggested:.2e}")
    else:
        say("--find-lr: nothing trained; pass --lr VALUE (or --lr auto) to train")
    return finding
