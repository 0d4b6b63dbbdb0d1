"""Weights in: .safetensors read through safetensors' own loader, exactly as .pth files are, crafted ones refused in
one line; torchvision's published weights by name through torch.hub's cache, hash-checked, served from file://."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from safetensors.torch import save_file

from conftest import assert_user_error
from datafiles import write_photo_folders

SMALL = ("--image-size", "32", "--batch-size", "4", "--no-tensorboard", "--json")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photo_folders(tmp_path_factory.mktemp("photos"), train=4, val=2)


@pytest.fixture(scope="module")
def resnet18_safetensors(tmp_path_factory, resnet18_weights) -> Path:
    path = tmp_path_factory.mktemp("safetensors") / "resnet18.safetensors"
    save_file(resnet18_weights[1], str(path))
    return path


def test_safetensors_weights_fine_tune_and_report_exactly_as_the_pth(cli, tmp_path, photos, resnet18_weights,
                                                                     resnet18_safetensors):
    runs = {}
    for name, weights in (("pth", resnet18_weights[0]), ("safetensors", resnet18_safetensors)):
        runs[name] = cli("transfer", "--weights", weights, "--data", photos, "--epochs", "1", "--load", "drop-head",
                         *SMALL)
        assert runs[name].exit_code == 0, runs[name].stderr
    pth, safetensors = runs["pth"].summary, runs["safetensors"].summary
    assert safetensors["arch"] == "resnet18" and "resnet18 (inferred)" in runs["safetensors"].stderr
    for key in ("arch", "missing_keys", "unexpected_keys", "trainable_params", "metrics", "confusion_matrix"):
        assert safetensors[key] == pth[key], key
    assert pth["missing_keys"] == ["fc.weight", "fc.bias"]


def test_inspect_weights_reads_safetensors_like_pth(cli, resnet18_weights, resnet18_safetensors):
    pth = cli("inspect-weights", resnet18_weights[0], "--arch", "resnet18", "--json", "--quiet").summary
    run = cli("inspect-weights", resnet18_safetensors, "--arch", "resnet18", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    safetensors = run.summary
    assert safetensors["file_kind"] == "torchvision weights (safetensors): resnet18, 1000 classes"
    for key in ("arch", "total_params", "total_bytes", "comparison"):
        assert safetensors[key] == pth[key], key
    by_name = {row["name"]: row for row in pth["tensors"]}  # a safetensors file keeps its own order (sorted)
    assert sorted(by_name) == sorted(row["name"] for row in safetensors["tensors"])
    assert all(row == by_name[row["name"]] for row in safetensors["tensors"])


def raw_safetensors(path: Path, header: bytes, body: bytes = b"", length: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + body)
    return path


@pytest.mark.parametrize("case, fragment", [
    ("header-past-the-end", "invalid header length"),
    ("not-json", "invalid json"),
    ("offsets-out-of-range", "not fully covered"),
    ("unknown-dtype", "unknown variant `q99`"),
    ("too-short", "header too small"),
])
def test_a_crafted_safetensors_file_is_one_error_line(cli, tmp_path, case, fragment):
    path = tmp_path / f"{case}.safetensors"
    tensor = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    if case == "header-past-the-end":
        raw_safetensors(path, b'{"a": 1}', length=10**6)
    elif case == "not-json":
        raw_safetensors(path, b"this is not json")
    elif case == "offsets-out-of-range":
        raw_safetensors(path, json.dumps({"fc.weight": tensor}).encode(), b"\0" * 8)
    elif case == "unknown-dtype":
        raw_safetensors(path, json.dumps({"fc.weight": {**tensor, "dtype": "Q99"}}).encode(), b"\0" * 16)
    else:
        path.write_bytes(b"\1\2")
    for command in (("inspect-weights", path), ("transfer", "--weights", path, "--data", tmp_path, *SMALL)):
        assert_user_error(cli(*command), str(path), "not a readable safetensors file", fragment)


@pytest.fixture
def hub(tmp_path, monkeypatch, resnet18_weights):
    """torch.hub's cache in the test's folder, and resnet18's published weights served from a file:// URL (named
    with the SHA-256 prefix of their bytes, as torchvision names its files)."""
    from torchvision.models import ResNet18_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = resnet18_weights[0].read_bytes()
    served = tmp_path / "served" / f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    served.parent.mkdir()
    served.write_bytes(data)
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", served.as_uri())
    return tmp_path / "torch" / "hub" / "checkpoints" / served.name


def test_imagenet_weights_come_through_the_hub_cache_and_are_hash_checked(cli, tmp_path, hub, photos,
                                                                          resnet18_weights, monkeypatch):
    from torchvision.models import ResNet18_Weights

    run = cli("transfer", "--weights", "imagenet", "--arch", "resnet18", "--data", photos, "--epochs", "1", *SMALL)
    assert run.exit_code == 0, run.stderr
    assert run.summary["weights"] == str(hub) and run.summary["missing_keys"] == []
    run = cli("inspect-weights", "imagenet", "--arch", "resnet18", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert run.summary["file_kind"] == "ResNet18_Weights.IMAGENET1K_V1: resnet18, 1000 classes"
    assert hub.read_bytes() == resnet18_weights[0].read_bytes()
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", (tmp_path / "gone" / hub.name).as_uri())
    trained = cli("transfer", "--weights", "ResNet18_Weights.IMAGENET1K_V1", "--data", photos, "--epochs", "1", *SMALL)
    assert trained.exit_code == 0, trained.stderr  # offline now: the cached copy serves
    assert trained.summary["arch"] == "resnet18" and trained.summary["weights"] == str(hub)
    assert trained.summary["unexpected_keys"] == [] and trained.summary["missing_keys"] == []

    hub.write_bytes(hub.read_bytes()[:-10])  # a torn copy in the cache
    assert_user_error(cli("inspect-weights", "imagenet", "--arch", "resnet18"), str(hub),
                      "does not match its published sha-256", "delete it")


def test_offline_with_no_cached_copy_names_the_file_and_the_folder(cli, tmp_path, hub, monkeypatch):
    from torchvision.models import ResNet18_Weights

    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", (tmp_path / "offline" / hub.name).as_uri())
    assert_user_error(cli("inspect-weights", "ResNet18_Weights.IMAGENET1K_V1"), "cannot fetch", hub.name,
                      str(hub.parent))
    assert not hub.exists()


def test_a_download_that_does_not_match_its_hash_is_refused_and_not_kept(cli, tmp_path, hub, monkeypatch):
    from torchvision.models import ResNet18_Weights

    forged = tmp_path / "served" / hub.name.replace(hub.name.split("-")[1][:8], "00000000")
    forged.write_bytes(b"not the weights")
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", forged.as_uri())
    assert_user_error(cli("inspect-weights", "imagenet", "--arch", "resnet18"), "does not match its published sha-256")
    assert not (hub.parent / forged.name).exists()


def test_weights_names_that_do_not_fit_are_one_error_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert_user_error(cli("inspect-weights", "ResNet34_Weights.IMAGENET1K_V1", "--arch", "resnet18"),
                      "resnet34's weights, not --arch resnet18's")
    assert_user_error(cli("transfer", "--weights", "ResNet34_Weights.IMAGENET1K_V1", "--arch", "resnet18", "--data",
                          tmp_path, *SMALL), "resnet34's weights, not --arch resnet18's")
    assert_user_error(cli("inspect-weights", "ResNet34_Weights.NO_SUCH"), "no such torchvision weights")
    assert_user_error(cli("inspect-weights", "FasterRCNN_ResNet50_FPN_Weights.COCO_V1"),
                      "not the weights of a torchvision classifier")
    assert_user_error(cli("inspect-weights", "imagenet", "--arch", "resnet_9000"), "unknown architecture")
    assert not (tmp_path / "torch").exists()  # each was refused before anything was fetched


def test_a_run_from_imagenet_resumes_and_replays_as_imagenet(cli, tmp_path, hub, photos, resnet18_weights):
    """Issue 25: the checkpoint kept the torch.hub cache's path of the published file, so `--resume r.pt --weights
    imagenet` was refused as "differs". It keeps the name typed; another weights file is still refused."""
    import torch

    small = ("--arch", "resnet18", "--data", photos, *SMALL)
    first = cli("transfer", "--weights", "imagenet", "--epochs", "1", "--save", "r.pt", *small)
    assert first.exit_code == 0, first.stderr
    assert first.summary["weights"] == str(hub)  # the summary names the file read
    assert torch.load("r.pt", weights_only=True)["config"]["weights"] == "imagenet"
    resumed = cli("transfer", "--resume", "r.pt", "--weights", "imagenet", "--epochs", "2", *small)
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.summary["epochs"] == 2
    assert cli("transfer", "--resume", "r.pt", "--weights", "ImageNet", "--epochs", "2", *small).exit_code == 0
    assert_user_error(cli("transfer", "--resume", "r.pt", "--weights", resnet18_weights[0], "--epochs", "4", *small),
                      "--weights", "differs")

    inspected = cli("inspect-weights", "r.pt")
    assert "replay: torchtools transfer --print-config --checkpoint r.pt > run.yaml" in inspected.stderr
    printed = cli("transfer", "--print-config", "--checkpoint", "r.pt")
    assert printed.exit_code == 0, printed.stderr
    assert "weights: imagenet" in printed.stdout.splitlines() and str(hub) not in printed.stdout
    (tmp_path / "run.yaml").write_text(printed.stdout)
    replayed = cli("transfer", "--config", "run.yaml", "--data", photos, "--epochs", "1", "--json", "--no-tensorboard")
    assert replayed.exit_code == 0, replayed.stderr
    assert replayed.summary["weights"] == str(hub) and replayed.summary["missing_keys"] == []


def test_a_checkpoint_that_kept_imagenets_cached_file_resumes_with_weights_imagenet(cli, tmp_path, hub, photos):
    """A checkpoint saved before imagenet was kept as typed holds the torch.hub cache's path of the file:
    `--resume --weights imagenet` was refused as "differs" from it, though imagenet reads that very file."""
    import torch

    small = ("--arch", "resnet18", "--data", photos, *SMALL)
    first = cli("transfer", "--weights", "imagenet", "--epochs", "1", "--save", "r.pt", *small)
    assert first.exit_code == 0, first.stderr
    state = torch.load("r.pt", weights_only=True)
    state["config"]["weights"] = str(hub)  # as the checkpoints of before kept it
    torch.save(state, "old.pt")
    resumed = cli("transfer", "--resume", "old.pt", "--weights", "ImageNet", "--epochs", "2", *small)
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.summary["epochs"] == 2
    assert_user_error(cli("transfer", "--resume", "old.pt", "--weights", "ResNet34_Weights.IMAGENET1K_V1",
                          "--epochs", "3", *small), "--weights", "differs")
