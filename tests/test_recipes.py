"""The fast recipes' networks build, take a batch of the right shape and train a step; recipes resolve."""

from __future__ import annotations

import pytest
import torch

from torchtools import recipes
from torchtools.core.engine import FitPlan, Objective, make_optimizer, train_one_epoch
from torchtools.data.loaders import TensorBatches
from torchtools.models import cifar as cifar_models
from torchtools.models import mnist as mnist_models


def _train_step(model, inputs, targets, recipe, amp_dtype=None):
    optimizer = make_optimizer(recipe.optimizer, model.parameters(), recipe.lr, recipe.momentum, recipe.weight_decay)
    batches = TensorBatches(inputs, targets, batch_size=len(targets))
    schedule, per_step = recipes.scheduler(recipe, optimizer, len(batches))
    plan = FitPlan("test", 1, torch.device("cpu"), scheduler=schedule, step_scheduler=per_step, amp_dtype=amp_dtype)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    metrics = train_one_epoch(model, Objective.classification(recipe.label_smoothing), optimizer, batches, plan,
                              epoch=1)
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters()))


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_mnist_fast_network(amp_dtype):
    torch.manual_seed(0)
    model = mnist_models.build("fast").to(memory_format=torch.channels_last)
    inputs = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    assert model(inputs).shape == (8, 10)
    _train_step(model, inputs, torch.randint(0, 10, (8,)), recipes.FAST["mnist"], amp_dtype)


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_fast_network(classes):
    torch.manual_seed(0)
    model = cifar_models.build("fast", classes)
    inputs = torch.randn(8, 3, 32, 32)
    assert model(inputs).shape == (8, classes)
    _train_step(model, inputs, torch.randint(0, classes, (8,)), recipes.FAST["cifar"])


def test_course_networks_unchanged():
    assert set(mnist_models.MODELS) >= {"mlp", "cnn", "inception", "resnet", "fast"}
    assert set(cifar_models.MODELS) >= {"quick", "resnet", "fast"}
    assert sum(parameter.numel() for parameter in mnist_models.build("cnn").parameters()) == 8490
    assert sum(parameter.numel() for parameter in cifar_models.build("quick").parameters()) == 145578


def test_recipes_resolve_with_overrides():
    for task in recipes.TASKS:
        for name in ("course", "fast"):
            recipe = recipes.recipe(task, name)
            assert recipe.schedule in ("constant", "one-cycle") and recipe.augment in ("none", "shift-flip")
    assert recipes.recipe("mnist", "course") == recipes.Recipe("cnn", 64, "sgd", 0.01, momentum=0.5, epochs=10)
    overridden = recipes.recipe("mnist", "fast", batch_size=32, lr=None)
    assert overridden.batch_size == 32 and overridden.lr == recipes.FAST["mnist"].lr


def test_one_cycle_schedule_spans_the_epochs():
    recipe = recipes.recipe("mnist", "fast", schedule="one-cycle", epochs=2, warmup=0.25)
    optimizer = make_optimizer("sgd", [torch.zeros(1, requires_grad=True)], recipe.lr, 0.9)
    schedule, per_step = recipes.scheduler(recipe, optimizer, steps_per_epoch=10)
    assert per_step
    rates = []
    for _ in range(20):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert max(rates) == pytest.approx(recipe.lr, rel=0.05) and rates[-1] < recipe.lr / 20
    assert recipes.scheduler(recipes.COURSE["mnist"], optimizer, 10) == (None, False)
