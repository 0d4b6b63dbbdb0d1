"""transfer with the backbones users have: timm models (--arch timm/NAME), Hub folders as timm writes them, the
preprocessing the weights were trained with kept from training to prediction and export, class imbalance, and
the real ImageNet-trained EfficientNet-Lite0 on the ants/bees photos (slow tier)."""

import csv
import os
from pathlib import Path

import pytest
import torch

from conftest import assert_user_error, run_torchtools
from datafiles import write_image, write_photo_folders

timm = pytest.importorskip("timm", reason="timm not installed: pip install 'torchtools[timm]'")

TINY = "mobilenetv3_small_050"  # 0.6 M parameters: a real timm architecture that trains in a second here
SMALL = ("--image-size", "32", "--batch-size", "4", "--no-tensorboard", "--json")


def save_safetensors(model: torch.nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return write_photo_folders(tmp_path_factory.mktemp("photos"), train=6, val=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    """A randomly initialised timm model's 1000-class weights under timm's key names (nothing downloaded)."""
    torch.manual_seed(0)
    model = timm.create_model(TINY, pretrained=False)
    path = save_safetensors(model, tmp_path_factory.mktemp("timm") / f"{TINY}.safetensors")
    return path, model.state_dict()


def decoded_nothing(run) -> bool:
    """No picture was listed or decoded: the loader never said what it chose, nor the folder what it holds."""
    return "loader " not in run.stderr and "train and" not in run.stderr


def test_timm_replace_head_finetunes_and_reports_keys_with_timms_preprocessing(cli, tmp_path, folders, tiny):
    weights, state = tiny
    run = cli("transfer", "--weights", weights, "--arch", f"timm/{TINY}", "--data", folders, "--epochs", "1",
              "--save", tmp_path / "m.pt", *SMALL)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["arch"] == f"timm/{TINY}" and summary["missing_keys"] == [] and summary["unexpected_keys"] == []
    assert "head classifier: 1000 -> 2 classes (replace-head)" in run.stderr
    # timm's pretrained_cfg of the model gives what the options did not: bicubic, ImageNet's mean.
    assert f"bicubic, crop-pct 0.875 (timm's pretrained_cfg of {TINY})" in run.stderr
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    assert saved["config"]["interpolation"] == "bicubic" and saved["config"]["image_size"] == 32
    assert saved["image_format"]["interpolation"] == "bicubic" and saved["image_format"]["size"] == 37
    assert saved["model"]["classifier.weight"].shape == (2, 1024)
    assert not torch.equal(saved["model"]["conv_stem.weight"], state["conv_stem.weight"])  # finetune: all layers


def test_timm_drop_head_freeze_trains_the_head_on_cached_features(cli, tmp_path, folders, tiny):
    weights, state = tiny
    run = cli("transfer", "--weights", weights, "--arch", f"timm/{TINY}", "--data", folders, "--epochs", "2",
              "--load", "drop-head", "--mode", "freeze", "--augment", "none", "--lr", "0.1",
              "--save", tmp_path / "f.pt", *SMALL)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["missing_keys"] == ["classifier.weight", "classifier.bias"] and summary["unexpected_keys"] == []
    assert summary["trainable_params"] == 1024 * 2 + 2
    assert "freeze: no augmentation" in run.stderr and "cannot stand in" not in run.stderr  # features computed once
    trained = torch.load(tmp_path / "f.pt", weights_only=True)["model"]
    backbone = [key for key in state if not key.startswith("classifier.")]
    assert all(torch.equal(trained[key], state[key]) for key in backbone)


def test_timm_keys_without_arch_are_one_error_naming_timm_before_any_decode(cli, folders, tiny):
    run = cli("transfer", "--weights", tiny[0], "--data", folders, *SMALL)
    assert_user_error(run, "timm's key names", "conv_stem", "--arch timm/NAME")
    assert decoded_nothing(run)


def test_a_file_that_fits_no_architecture_names_the_nearest_before_any_decode(
        cli, tmp_path, folders, resnet18_weights):
    state = dict(resnet18_weights[1])
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(state, tmp_path / "odd.pth")
    run = cli("transfer", "--weights", tmp_path / "odd.pth", "--data", folders, *SMALL)
    assert_user_error(run, "fits no torchvision classifier", "the nearest is resnet18")
    assert decoded_nothing(run)
    # With --arch, the shapes that differ are named, still before any picture is read.
    wrong = cli("transfer", "--weights", tiny_file(tmp_path), "--arch", "resnet34", "--data", folders, *SMALL)
    assert_user_error(wrong, "does not fit resnet34")
    assert decoded_nothing(wrong)


def tiny_file(folder: Path) -> Path:
    return save_safetensors(timm.create_model(TINY, pretrained=False), folder / "t.safetensors")


def test_without_timm_a_timm_arch_is_one_error_naming_the_extra(tmp_path, folders, tiny):
    shim = tmp_path / "shim" / "timm"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('timm is not installed here')\n")
    path = os.pathsep.join([str(shim.parent), os.environ.get("PYTHONPATH", "")])
    run = run_torchtools("transfer", "--weights", tiny[0], "--arch", f"timm/{TINY}", "--data", folders, *SMALL,
                         cwd=tmp_path, env={"PYTHONPATH": path})
    assert_user_error(run, "need timm", "pip install 'torchtools[timm]'")
    assert decoded_nothing(run)


def test_a_hub_folder_trains_with_no_arch_and_its_own_mean_and_std(cli, tmp_path, folders):
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(TINY, pretrained=False, num_classes=3)
    hub = tmp_path / "hub"
    save_for_hf(model, str(hub), model_config={"label_names": ["wasp", "ant", "bee"]}, safe_serialization=True,
                data_config={"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "interpolation": "bilinear",
                             "crop_pct": 1.0})
    assert (hub / "config.json").is_file() and (hub / "model.safetensors").is_file()
    run = cli("transfer", "--weights", hub, "--data", folders, "--epochs", "1", "--save", tmp_path / "h.pt", *SMALL)
    assert run.exit_code == 0, run.stderr
    assert run.summary["arch"] == f"timm/{TINY}" and run.summary["missing_keys"] == []
    assert f"timm/{TINY} (inferred); head classifier: 3 (wasp, ant, bee) -> 2 classes" in run.stderr
    assert f"mean 0.5,0.5,0.5, std 0.25,0.25,0.25, bilinear, crop-pct 1 ({hub / 'config.json'}'s" in run.stderr
    saved = torch.load(tmp_path / "h.pt", weights_only=True)
    assert saved["config"]["mean"] == [0.5] * 3 and saved["config"]["std"] == [0.25] * 3
    assert saved["image_format"]["mean"] == (0.5,) * 3 and saved["image_format"]["size"] == 32  # crop-pct 1
    # Typed options win over the folder's.
    typed = cli("transfer", "--weights", hub, "--data", folders, "--epochs", "1", "--mean", "0.4,0.4,0.4", *SMALL)
    assert typed.exit_code == 0, typed.stderr
    assert "mean 0.4,0.4,0.4, 32 px (given); std 0.25,0.25,0.25, bilinear" in typed.stderr


def test_hub_folder_mistakes_are_one_error(cli, tmp_path, folders):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(cli("transfer", "--weights", empty, "--data", folders, *SMALL), "without config.json")
    (empty / "config.json").write_text('{"architecture": "no_such_net_at_all"}')
    assert_user_error(cli("transfer", "--weights", empty, "--data", folders, *SMALL), "but no weights")
    torch.save({"w": torch.zeros(1)}, empty / "pytorch_model.bin")
    assert_user_error(cli("transfer", "--weights", empty, "--data", folders, *SMALL), "unknown timm architecture")
    (empty / "config.json").write_text("{not json")
    assert_user_error(cli("transfer", "--weights", empty, "--data", folders, *SMALL), "not readable JSON")


@pytest.mark.parametrize("options, fragments", [
    (("--mean", "0.5,0.5"), ("--mean 0.5,0.5", "give 3 numbers")),
    (("--std", "0.5,0,0.5"), ("--std 0.5,0,0.5", "0.0 must be at least")),
    (("--std", "a,b,c"), ("--std a,b,c", "expected a list of numbers")),
    (("--mean", "nan,0,0"), ("--mean nan,0,0", "nan must be a finite number")),
    (("--crop-pct", "1.5"), ("--crop-pct 1.5", "at most 1")),
])
def test_preprocessing_mistakes_are_one_error_before_any_decode(cli, folders, resnet18_weights, options, fragments):
    run = cli("transfer", "--weights", resnet18_weights[0], "--data", folders, *options, *SMALL)
    assert_user_error(run, *fragments)
    assert decoded_nothing(run)


def test_timm_and_torchvision_resnet18_files_load_the_same_tensors(cli, tmp_path, folders):
    """timm's resnet18 keeps torchvision's key names: a timm model.safetensors and a torchvision .pth of the same
    numbers give the same backbone, under either architecture."""
    from torchvision import models

    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False)
    timm_file = save_safetensors(source, tmp_path / "model.safetensors")
    torchvision_model = models.resnet18()
    torchvision_model.load_state_dict(source.state_dict())
    torch.save(torchvision_model.state_dict(), tmp_path / "resnet18.pth")
    backbones = {}
    for name, weights, arch in (("a", timm_file, "resnet18"), ("b", tmp_path / "resnet18.pth", "resnet18"),
                                ("c", tmp_path / "resnet18.pth", "timm/resnet18")):
        run = cli("transfer", "--weights", weights, "--arch", arch, "--data", folders, "--epochs", "1",
                  "--mode", "freeze", "--save", tmp_path / f"{name}.pt", *SMALL)
        assert run.exit_code == 0, run.stderr
        assert run.summary["missing_keys"] == [] and run.summary["unexpected_keys"] == []
        state = torch.load(tmp_path / f"{name}.pt", weights_only=True)["model"]
        backbones[name] = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = {key: value for key, value in source.state_dict().items() if not key.startswith("fc.")}
    for state in backbones.values():
        assert state.keys() == expected.keys() and all(torch.equal(state[key], expected[key]) for key in expected)


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> Path:
    """A 10:1 split: 20 training ants, 2 training bees, 3 of each held out."""
    import numpy as np

    root, rng = tmp_path_factory.mktemp("uneven"), np.random.default_rng(3)
    for split, counts in (("train", (20, 2)), ("val", (3, 3))):
        for label, (name, count) in enumerate(zip(("ants", "bees"), counts)):
            for index in range(count):
                write_image(root / split / name / f"{index}.png", label, rng)
    return root


def test_class_weights_balanced_changes_the_loss_is_saved_and_resumed(cli, tmp_path, uneven, resnet18_weights):
    # fp32 at a small rate: a random resnet18 on 4-picture batches of 32 px can diverge under bf16 autocast.
    common = ("--weights", resnet18_weights[0], "--data", uneven, "--epochs", "1", "--no-amp", "--lr", "0.001", *SMALL)
    plain = cli("transfer", *common)
    assert plain.exit_code == 0, plain.stderr
    assert "training pictures per class: ants 20, bees 2" in plain.stderr
    assert "warning: class bees has 2 training pictures, under 1/5 of ants's 20" in plain.stderr
    assert "recall" in plain.stderr and "precision" in plain.stderr  # the per-class table
    balanced = cli("transfer", *common, "--class-weights", "balanced", "--save", tmp_path / "b.pt")
    assert balanced.exit_code == 0, balanced.stderr
    assert balanced.summary["metrics"]["train_loss"] != pytest.approx(plain.summary["metrics"]["train_loss"])
    saved = torch.load(tmp_path / "b.pt", weights_only=True)
    assert saved["config"]["class_weights"] == "balanced"
    assert saved["class_weights"] == pytest.approx([22 / (2 * 20), 22 / (2 * 2)])
    evaluated = cli("transfer", "--checkpoint", tmp_path / "b.pt", "--data", uneven, "--json")
    assert evaluated.exit_code == 0, evaluated.stderr  # the held-out loss weighted as in training
    assert evaluated.summary["metrics"]["val_loss"] == pytest.approx(balanced.summary["metrics"]["val_loss"])
    resumed = cli("transfer", "--resume", tmp_path / "b.pt", "--data", uneven, "--epochs", "2", "--save",
                  tmp_path / "b.pt", "--no-amp", *SMALL)
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.summary["epochs"] == 2
    again = torch.load(tmp_path / "b.pt", weights_only=True)
    assert again["config"]["class_weights"] == "balanced" and again["class_weights"] == saved["class_weights"]
    refused = cli("transfer", "--resume", tmp_path / "b.pt", "--data", uneven, "--epochs", "3",
                  "--class-weights", "none", *SMALL)
    assert_user_error(refused, "--class-weights none differs from the checkpoint")


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("suffix", [".torchscript", ".onnx"])
def test_a_timm_model_exports_and_passes_its_parity_check(cli, tmp_path, folders, tiny, suffix):
    if suffix == ".onnx":
        pytest.importorskip("onnxruntime", reason="onnx export tools not installed: pip install '.[export]'")
    trained = cli("transfer", "--weights", tiny[0], "--arch", f"timm/{TINY}", "--data", folders, "--epochs", "1",
                  "--save", tmp_path / "m.pt", *SMALL)
    assert trained.exit_code == 0, trained.stderr
    output = tmp_path / f"m{suffix}"
    run = cli("export", tmp_path / "m.pt", "--output", output, "--inputs", folders / "val", "--json")
    assert run.exit_code == 0, run.stderr
    check = run.summary["export"]
    assert check["format"] == ("torchscript" if suffix == ".torchscript" else "onnx") and check["passed"]
    assert check["top1_agreement"] == 1.0 and output.is_file()


REAL_WEIGHTS = "pretrained/efficientnet_lite0.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["freeze", "finetune"])
def test_real_imagenet_weights_label_ants_and_bees(tmp_path, shared_data, mode):
    """The real job: a real ImageNet backbone, its own preprocessing (mean = std = 0.5), few photos, high accuracy
    within 5 epochs; the saved checkpoint labels the val pictures with the same accuracy."""
    weights, data = shared_data / REAL_WEIGHTS, shared_data / "hymenoptera_data"
    if not weights.is_file() or not data.is_dir():
        pytest.skip(f"{weights} or {data} not found")
    run = run_torchtools("transfer", "--weights", weights, "--arch", "timm/efficientnet_lite0", "--mean",
                         "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--data", data, "--mode", mode, "--epochs", "5",
                         "--target-accuracy", "0.9", "--save", tmp_path / "m.pt", "--no-tensorboard", "--json",
                         cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}, timeout=1800)
    assert run.exit_code == 0, run.stderr
    accuracy = run.summary["metrics"]["val_accuracy"]
    assert accuracy >= 0.90 and run.summary["epochs"] <= 5
    predicted = run_torchtools("transfer", "--checkpoint", tmp_path / "m.pt", "--predict", data / "val", "--output",
                               tmp_path / "val.csv", "--json", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert predicted.exit_code == 0, predicted.stderr
    with open(tmp_path / "val.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    right = sum(Path(row["path"]).parent.name == row["label"] for row in rows)
    assert len(rows) == 153 and right / len(rows) == pytest.approx(accuracy, abs=1e-6)
