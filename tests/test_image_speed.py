"""The image paths made cheaper: exact channel statistics from histograms, and freeze mode's features
computed once per picture standing in for the frozen backbone."""

import pytest
import torch
from torchvision import models

from datafiles import write_photo_folders
from torchtools.data.loaders import TensorBatches
from torchtools.data.transforms import channel_stats
from torchtools.models.frozen_features import FrozenBackbone, OnFeatures, head_inputs, precomputable


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


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photo_folders(tmp_path_factory.mktemp("photos"), train=6, val=3)


def pictures_through_backbone(cli, monkeypatch, *args) -> tuple[int, object]:
    """(pictures resnet18's backbone saw, the run): a count of what each epoch costs in freeze mode."""
    from torchvision.models.resnet import ResNet

    seen = []
    forward = ResNet._forward_impl
    monkeypatch.setattr(ResNet, "_forward_impl", lambda self, x: seen.append(len(x)) or forward(self, x))
    run = cli("transfer", "--mode", "freeze", "--image-size", "32", "--batch-size", "4", "--no-tensorboard",
              "--json", "--device", "cpu", *args)
    assert run.exit_code == 0, run.stderr
    return sum(seen), run


@pytest.mark.parametrize("augment", ["none", "resized-crop-flip"])
def test_freeze_mode_runs_the_backbone_only_on_what_changes(cli, monkeypatch, tmp_path, photos, resnet18_weights,
                                                            augment):
    common = ("--weights", resnet18_weights[0], "--data", photos, "--augment", augment)
    one, _ = pictures_through_backbone(cli, monkeypatch, *common, "--epochs", "1")
    three, run = pictures_through_backbone(cli, monkeypatch, *common, "--epochs", "3", "--save", tmp_path / "m.pt")
    train_images = run.summary["train_images"]
    if augment == "none":  # every feature computed once, whatever the epochs
        assert three == one and "no augmentation" in run.stderr
    else:  # each epoch's crops go through the backbone; the held-out pictures only once
        assert three - one == 2 * train_images and "held-out features are still computed once" in run.stderr
    # The head trained on features is the full model's: --checkpoint scores the pictures as training did.
    evaluated = cli("transfer", "--checkpoint", tmp_path / "m.pt", "--data", photos, "--json", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.stderr
    for key in ("val_loss", "val_accuracy"):
        assert evaluated.summary["metrics"][key] == pytest.approx(run.summary["metrics"][key], rel=1e-5)
    saved = torch.load(tmp_path / "m.pt", weights_only=True)["model"]
    assert set(saved) == set(resnet18_weights[1])  # the full model's keys, as without precomputing
    assert torch.equal(saved["layer1.0.conv1.weight"], resnet18_weights[1]["layer1.0.conv1.weight"])


def test_the_frozen_backbone_keeps_its_statistics_while_the_head_trains(resnet):
    frozen = FrozenBackbone(resnet, "fc").train()
    assert not resnet.layer1[0].bn1.training and frozen.head.training
    before = resnet.layer1[0].bn1.running_mean.clone()
    frozen(torch.randn(4, 3, 32, 32))
    assert torch.equal(resnet.layer1[0].bn1.running_mean, before)
    features = torch.randn(4, 512)
    assert torch.equal(frozen(features), resnet.fc(features))
    assert list(frozen.state_dict()) == list(resnet.state_dict())
