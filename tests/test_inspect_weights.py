"""inspect-weights: the tensor table and totals, what the file is, --filter, --arch, --diff, --histograms."""

from pathlib import Path

import pytest
import torch

from conftest import assert_user_error


def test_table_totals_and_kind_of_torchvision_weights(cli, resnet18_weights):
    path, state = resnet18_weights
    run = cli("inspect-weights", path, "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["total_params"] == 11_689_512  # torchvision's published count for resnet18
    assert summary["file_kind"] == "torchvision weights: resnet18, 1000 classes" and summary["arch"] == "resnet18"
    assert [row["name"] for row in summary["tensors"]] == list(state)
    rows = {row["name"]: row for row in summary["tensors"]}
    assert rows["conv1.weight"]["shape"] == [64, 3, 7, 7] and rows["conv1.weight"]["params"] == 64 * 3 * 7 * 7
    assert rows["conv1.weight"]["dtype"] == "float32" and not rows["conv1.weight"]["buffer"]
    assert rows["conv1.weight"]["mean"] == pytest.approx(state["conv1.weight"].double().mean().item())
    assert rows["bn1.weight"]["mean"] == 1 and rows["bn1.weight"]["std"] == 0 and rows["bn1.weight"]["zeros"] == 0
    assert rows["bn1.bias"]["zeros"] == 1 and rows["bn1.running_var"]["buffer"]
    assert rows["bn1.num_batches_tracked"]["dtype"] == "int64" and rows["bn1.num_batches_tracked"]["std"] is None
    assert summary["total_bytes"] == sum(value.numel() * value.element_size() for value in state.values())
    # The table fits the 80 columns of a non-terminal: long names are cut in the middle, every row is there.
    rows_shown = [line for line in run.stderr.splitlines() if line.startswith("│ ")]
    assert len(rows_shown) == len(state) and max(map(len, rows_shown)) <= 80
    assert "layer4.1.downsample" not in run.stderr and any("…" in line for line in rows_shown)
    assert "11,689,512 parameters" in run.stderr


def test_resnet34_parameter_count(cli, tmp_path):
    from torchvision import models

    # Zeros in every tensor: only the names and shapes matter for the count (and it saves quickly).
    with torch.device("meta"):
        shapes = models.resnet34().state_dict()
    torch.save({key: torch.zeros(value.shape, dtype=value.dtype) for key, value in shapes.items()},
               tmp_path / "resnet34.pth")
    run = cli("inspect-weights", tmp_path / "resnet34.pth", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    assert run.summary["total_params"] == 21_797_672 and run.summary["arch"] == "resnet34"


def test_filter_selects_tensors_and_totals(cli, resnet18_weights):
    run = cli("inspect-weights", resnet18_weights[0], "--filter", r"^fc\.", "--json")
    assert run.exit_code == 0, run.stderr
    assert [row["name"] for row in run.summary["tensors"]] == ["fc.weight", "fc.bias"]
    assert run.summary["total_params"] == 512 * 1000 + 1000
    assert "2 of 122 tensors" in run.stderr
    assert_user_error(cli("inspect-weights", resnet18_weights[0], "--filter", "fc.("), "--filter", "regular expression")


def test_compare_with_an_architecture(cli, resnet18_weights):
    run = cli("inspect-weights", resnet18_weights[0], "--arch", "resnet18", "--classes", "2", "--json", "--quiet")
    assert run.exit_code == 0, run.stderr
    comparison = run.summary["comparison"]
    assert comparison["matching"] == 120 and comparison["missing"] == [] and comparison["unexpected"] == []
    assert comparison["mismatched"] == [{"name": "fc.weight", "file_shape": [1000, 512], "arch_shape": [2, 512]},
                                        {"name": "fc.bias", "file_shape": [1000], "arch_shape": [2]}]
    deeper = cli("inspect-weights", resnet18_weights[0], "--arch", "resnet34")
    assert deeper.exit_code == 0, deeper.stderr
    counts = "against resnet34 (1000 classes): 122 matching, 80 missing, 0 unexpected, 0 shape-mismatched"
    assert counts in deeper.stderr
    assert "missing: 80 (layer1.2.conv1.weight" in deeper.stderr
    assert_user_error(cli("inspect-weights", resnet18_weights[0], "--arch", "resnet17"), "unknown architecture")


def test_diff_two_files(cli, tmp_path, resnet18_weights):
    path, state = resnet18_weights
    other = dict(state)
    other["layer3.0.conv1.weight"] = state["layer3.0.conv1.weight"] + 0.5
    del other["fc.bias"]
    torch.save({"model": other}, tmp_path / "other.pt")
    run = cli("inspect-weights", path, "--diff", tmp_path / "other.pt", "--json")
    assert run.exit_code == 0, run.stderr
    diff = run.summary["diff"]
    largest = {item["name"]: item["max_abs_diff"] for item in diff["tensors"]}
    assert largest["layer3.0.conv1.weight"] == pytest.approx(0.5)
    assert largest["conv1.weight"] == 0 and "fc.bias" not in largest
    assert diff["only_in_file"] == ["fc.bias"] and diff["only_in_other"] == [] and diff["mismatched"] == []
    assert "only in file: 1 (fc.bias)" in run.stderr


def test_torchtools_checkpoint_and_histograms(cli, tmp_path, resnet18_weights):
    from torchtools.core.checkpoints import save_checkpoint

    save_checkpoint(tmp_path / "run.pt", {"command": "transfer", "model": resnet18_weights[1], "epoch": 3,
                                          "metrics": {"val_accuracy": 0.9}, "config": {"arch": "resnet18"}})
    run = cli("inspect-weights", tmp_path / "run.pt", "--filter", "^layer1", "--histograms",
              "--runs-dir", tmp_path / "runs", "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["file_kind"].startswith("torchtools checkpoint (torchtools transfer, epoch 3)")
    assert summary["checkpoint_info"]["metrics"] == {"val_accuracy": 0.9}
    assert "val_accuracy 0.9" in run.stderr
    events = list(Path(summary["histograms"]).glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 1000
    assert str(tmp_path / "runs" / "inspect-weights") in summary["histograms"]


def test_not_a_weights_file(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_user_error(cli("inspect-weights", tmp_path / "notes.txt"), "not a readable PyTorch file")
    torch.save({"lr": 0.1}, tmp_path / "settings.pt")
    assert_user_error(cli("inspect-weights", tmp_path / "settings.pt"), "holds no state_dict")
    assert_user_error(cli("inspect-weights", tmp_path / "absent.pt"), "not found")
