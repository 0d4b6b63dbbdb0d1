"""The image paths made cheaper: exact channel statistics from histograms, and freeze mode's features
computed once per picture standing in for the frozen backbone."""

import pytest
import torch
from torchvision import models

from torchtools.data.loaders import TensorBatches
from torchtools.data.transforms import channel_stats
from torchtools.models.frozen_features import OnFeatures, head_inputs, precomputable


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_statistics_are_exactly_the_float64_ones(channels):
    images = torch.randint(0, 256, (50, channels, 9, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    values = images.transpose(0, 1).reshape(channels, -1).double() / 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx(values.mean(dim=1).tolist(), abs=1e-12)
    assert std == pytest.approx(values.std(dim=1).tolist(), abs=1e-12)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = models.resnet18(num_classes=3)
    with torch.no_grad():  # BatchNorm statistics other than the initial 0/1, as a pretrained model has
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def test_the_head_on_computed_features_is_the_whole_model(resnet):
    inputs, labels = torch.randn(10, 3, 32, 32), torch.arange(10) % 3
    resnet.train()
    features, targets = head_inputs(resnet, "fc", TensorBatches(inputs, labels, batch_size=4), torch.device("cpu"))
    assert features.shape == (10, 512) and torch.equal(targets, labels)
    assert resnet.training  # left as it was found
    resnet.eval()
    with torch.no_grad():
        expected = resnet(inputs)
    head = OnFeatures(resnet, "fc")
    assert torch.allclose(head(features), expected, atol=1e-5)
    # Training the head on the features trains the model's own head: its state_dict is the checkpoint.
    before = resnet.fc.weight.clone()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    torch.nn.functional.cross_entropy(head(features), targets).backward()
    optimizer.step()
    assert not torch.equal(resnet.fc.weight, before)
    assert [name for name, _ in head.named_parameters()] == ["head.weight", "head.bias"]


def test_a_module_that_is_not_the_last_step_is_refused(resnet):
    batches = TensorBatches(torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long), batch_size=2)
    with pytest.raises(ValueError, match="layer4.1.bn2"):
        head_inputs(resnet, "layer4.1.bn2", batches, torch.device("cpu"))


def test_random_augmentation_rules_precomputing_out():
    assert precomputable("none")[0]
    allowed, why = precomputable("resized-crop-flip")
    assert not allowed and "differently every epoch" in why and "held-out features are still computed once" in why
