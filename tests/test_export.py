"""torchtools export: every command's checkpoint in every format reproduces torchtools' logits, loads back with its
own runtime, keeps its batch (and a name's length) free and carries its classes; the failures a user can meet."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO, assert_user_error
from datafiles import names_rows, write_cifar10_batches, write_mnist, write_names_csv, write_photo_folders
from torchtools.cli import app

HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx/onnxruntime not installed: pip install '.[export]'")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "exported": ".pt2", "safetensors": ".safetensors"}
FORMATS = [pytest.param("onnx", marks=needs_onnx), "torchscript", "exported", "safetensors"]
TRAIN = {
    "mnist": ["mnist", "--data", "{data}", "--epochs", "1"],
    "cifar": ["cifar", "--data", "{data}", "--epochs", "1"],
    "transfer": ["transfer", "--weights", "none", "--arch", "resnet18", "--image-size", "32", "--data", "{photos}",
                 "--epochs", "1", "--batch-size", "4", "--lr", "0.001"],
    "names-rnn": ["names-rnn", "--data", "{names}", "--hidden", "16", "--epochs", "1"],
    "diabetes": ["diabetes", "--epochs", "2"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One small checkpoint per command, trained on generated data in the real formats."""
    root = tmp_path_factory.mktemp("export")
    places = {"data": write_mnist(root / "data", train=100, test=40), "photos": root / "photos",
              "names": write_names_csv(root / "names.csv", names_rows(0, 30), gzipped=False)}
    write_cifar10_batches(root / "data")
    write_photo_folders(root / "photos", train=6, val=3)
    checkpoints = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHTOOLS_CACHE", str(root / "cache"))
        for command, args in TRAIN.items():
            checkpoints[command] = root / f"{command}.pt"
            result = CliRunner().invoke(app, [arg.format(**places) for arg in args] + [
                "--device", "cpu", "--no-tensorboard", "--quiet", "--save", str(checkpoints[command])])
            assert result.exit_code == 0, result.stderr
    checkpoints["data"], checkpoints["photos"] = places["data"], places["photos"]
    return checkpoints


def exported(path: Path, fmt: str, command: str):
    """(a function from a batch to logits, the metadata) read with the format's own runtime, as a user would."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        metadata = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
        name = session.get_inputs()[0].name
        return lambda batch: torch.from_numpy(session.run(None, {name: batch.numpy()})[0]), metadata
    if fmt == "safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), json.loads(path.with_suffix(".json").read_text())
    extra = {"torchtools.json": ""}
    module = torch.jit.load(str(path), _extra_files=extra) if fmt == "torchscript" else \
        torch.export.load(path, extra_files=extra).module()
    return (lambda batch: module(batch).detach()), json.loads(extra["torchtools.json"])


def some_inputs(command: str, metadata: dict) -> torch.Tensor:
    """Five inputs of what the exported graph takes, described by its own metadata."""
    generator = torch.Generator().manual_seed(1)
    shape = metadata["input"]["shape"]
    if command == "names-rnn":
        codes = torch.randint(2, 2 + len(metadata["preprocessing"]["vocabulary"]), (5, 9), generator=generator)
        codes[1, 4:] = 0
        codes[3, 2:] = 0
        return codes
    if command == "diabetes":
        return torch.randn(5, shape[1], generator=generator) * 30 + 50
    return torch.randint(0, 256, (5, *shape[1:]), dtype=torch.uint8, generator=generator)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", list(TRAIN))
def test_every_checkpoint_exports_in_every_format_with_torchtools_logits(cli, tmp_path, trained, command, fmt,
                                                                         monkeypatch):
    monkeypatch.setenv("TORCHTOOLS_DATA", str(trained["data"]))  # mnist and cifar check on their test images
    output = tmp_path / "out" / f"model{SUFFIX[fmt]}"
    run = cli("export", trained[command], "--format", fmt, "--output", output, "--json")
    assert run.exit_code == 0, run.stderr
    check = run.summary["export"]
    assert run.summary["command"] == "export" and run.summary["model_command"] == command
    assert check["format"] == fmt and check["path"] == str(output) and check["bytes"] == output.stat().st_size
    assert check["max_abs_diff"] <= 1e-4 * max(1.0, check["max_abs_logit"]) and check["top1_agreement"] == 1.0
    assert check["seconds"] > 0 and "largest |logit difference|" in run.stderr
    if command in ("mnist", "cifar", "names-rnn", "diabetes"):
        assert "generated" not in check["inputs"], check["inputs"]  # their data was at hand
        assert check["samples"] == 32
    else:  # the checkpoint says where its photos were: the held-out ones, 3 ants and 3 bees
        assert check["inputs"] == f"pictures from {trained['photos'] / 'val'}" and check["samples"] == 6
    assert sorted(path.name for path in output.parent.iterdir()) == sorted(
        [output.name] + (["model.json"] if fmt == "safetensors" else []))  # no temporary file left

    saved = torch.load(trained[command], weights_only=True)
    loaded, metadata = exported(output, fmt, command)
    assert metadata["command"] == command and metadata["config"] == saved["config"]
    assert metadata["classes"] == saved.get("classes", saved.get("labels"))
    if fmt == "safetensors":
        assert loaded.keys() == saved["model"].keys()
        assert all(torch.equal(loaded[key], saved["model"][key]) for key in loaded)
        return
    batch = some_inputs(command, metadata)
    whole = loaded(batch)
    assert whole.shape == (5, 1 if command == "diabetes" else len(metadata["classes"]))
    # The batch is free, and so is a name's padded length: one row alone, or padded further, gives the same logits.
    torch.testing.assert_close(loaded(batch[2:3]), whole[2:3], atol=1e-5, rtol=1e-5)
    if command == "names-rnn":
        padded = torch.cat([batch, torch.zeros(5, 6, dtype=batch.dtype)], dim=1)
        torch.testing.assert_close(loaded(padded), whole, atol=1e-5, rtol=1e-5)


def test_a_safetensors_export_is_pretrained_weights_for_transfer(cli, tmp_path, trained):
    output = tmp_path / "m.safetensors"
    assert cli("export", trained["transfer"], "--format", "safetensors", "--output", output).exit_code == 0
    metadata = json.loads((tmp_path / "m.json").read_text())
    assert metadata["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert metadata["input"]["shape"] == ["batch", 3, 37, 37] and metadata["preprocessing"]["crop"] == 32
    run = cli("inspect-weights", output, "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["arch"] == "resnet18"


def test_an_export_past_the_tolerance_exits_1_with_the_figures_and_leaves_nothing(
        cli, tmp_path, trained, monkeypatch):
    from torchtools.core import exports

    real_load = exports.load

    def drifting(*args, **kwargs):  # an export that computes something slightly different
        model, metadata = real_load(*args, **kwargs)
        return (lambda batch: model(batch) + 0.01), metadata

    monkeypatch.setattr(exports, "load", drifting)
    output = tmp_path / "mnist.pt2"
    run = cli("export", trained["mnist"], "--format", "exported", "--output", output, "--json")
    assert run.exit_code == 1, run.stderr
    error = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "largest |logit difference| 0.01" in error[0] and "nothing written" in error[0]
    assert run.summary["export"]["passed"] is False and run.summary["export"]["max_abs_diff"] == pytest.approx(0.01)
    assert list(tmp_path.iterdir()) == []


def test_without_the_onnx_tools_one_error_line_names_the_extra(cli, tmp_path, trained, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args))
    run = cli("export", trained["mnist"], "--format", "onnx", "--output", tmp_path / "m.onnx")
    assert_user_error(run, "onnxruntime", "pip install 'torchtools[export]'")


def test_what_cannot_be_exported_is_one_error_line(cli, tmp_path, trained):
    linear = tmp_path / "linear.pt"
    assert cli("fit-linear", "--save", linear, "--quiet").exit_code == 0
    assert_user_error(cli("export", linear, "--format", "onnx", "--output", tmp_path / "l.onnx"),
                      "saved by `torchtools fit-linear`", "mnist, cifar, transfer, names-rnn, diabetes")
    assert_user_error(cli("export", trained["mnist"], "--format", "onnx", "--output", tmp_path / "m.pt"),
                      "must end in .onnx")
    assert_user_error(cli("export", tmp_path / "absent.pt", "--format", "exported", "--output", tmp_path / "m.pt2"),
                      "not found")
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("hello")
    assert_user_error(cli("export", not_a_checkpoint, "--format", "exported", "--output", tmp_path / "m.pt2"),
                      "not a readable pytorch file")
    copy = tmp_path / "copy.pt"
    copy.write_bytes(trained["mnist"].read_bytes())
    assert_user_error(cli("export", copy, "--format", "torchscript", "--output", copy),
                      "would overwrite the checkpoint")
    assert_user_error(cli("export", trained["names-rnn"], "--format", "exported", "--output", tmp_path / "n.pt2",
                          "--inputs", tmp_path, "--inputs", tmp_path), "one file or folder")
    assert copy.read_bytes() == trained["mnist"].read_bytes()


@needs_onnx
def test_predict_onnx_example_labels_a_folder_as_torchtools_does_without_torch(cli, tmp_path, trained):
    folder = tmp_path / "photos"
    write_photo_folders(folder, train=2, val=3, prefix="p")
    (folder / "val" / "bees" / "broken.png").write_bytes(b"not a picture")
    model = tmp_path / "m.onnx"
    exported_ = cli("export", trained["transfer"], "--format", "onnx", "--output", model, "--inputs", folder)
    assert exported_.exit_code == 0, exported_.stderr
    assert cli("transfer", "--checkpoint", trained["transfer"], "--predict", folder / "val", "--output",
               tmp_path / "p.csv", "--quiet").exit_code == 0
    blocked = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")  # importing torch would fail
    script = subprocess.run([sys.executable, "-c", blocked, str(REPO / "examples" / "predict_onnx.py"), str(model),
                             str(folder / "val")], capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr
    assert "broken.png" in script.stderr
    ours = [line.split(",") for line in script.stdout.splitlines()]
    theirs = [line.split(",")[:3] for line in (tmp_path / "p.csv").read_text().splitlines()]
    assert ours[0] == theirs[0] == ["path", "label", "probability"] and len(ours) == len(theirs) == 7
    for (path, label, probability), (their_path, their_label, their_probability) in zip(ours[1:], theirs[1:]):
        assert (path, label) == (their_path, their_label)
        assert float(probability) == pytest.approx(float(their_probability), abs=1e-4)


def test_the_best_file_holds_no_optimizer_state_and_is_refused_by_resume(cli, tmp_path, trained):
    last = torch.load(trained["transfer"], weights_only=True)
    best_file = trained["transfer"].with_name("transfer.best.pt")
    best = torch.load(best_file, weights_only=True)
    assert last["optimizer"]["state"] and best["optimizer"] is None and best["scheduler"] is None
    assert best_file.stat().st_size < 0.6 * trained["transfer"].stat().st_size  # SGD momentum: one model's worth
    assert best["model"].keys() == last["model"].keys() and best["classes"] == last["classes"]
    assert cli("export", best_file, "--output", tmp_path / "best.pt2").exit_code == 0
    assert_user_error(cli("transfer", "--resume", best_file, "--epochs", "2", "--data", tmp_path),
                      "holds no optimizer state", "--checkpoint")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:`torch.jit.trace:FutureWarning")
@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_the_names_graph_computes_what_the_classifier_computes(cell, bidirectional):
    from torchtools.models.deployable import NamesGraph
    from torchtools.models.names import NameClassifier

    torch.manual_seed(0)
    model = NameClassifier(30, 4, hidden=8, layers=2, bidirectional=bidirectional, cell=cell).eval()
    graph = NamesGraph(model).eval()
    codes = torch.randint(2, 30, (6, 9))
    codes[1, 3:] = 0
    codes[4, 1:] = 0  # a one-letter name
    with torch.no_grad():
        traced = torch.jit.trace(graph, (codes[:2, :5].clone(),))
        torch.testing.assert_close(graph(codes), model(codes), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(traced(codes), model(codes), atol=1e-6, rtol=1e-5)  # another length and batch


def test_inputs_that_cannot_be_read_are_one_error_line(cli, tmp_path, trained):
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    assert_user_error(cli("export", trained["cifar"], "--output", tmp_path / "c.pt2", "--inputs", tmp_path / "bad.png"),
                      "none of the 1 picture(s)")
    assert not (tmp_path / "c.pt2").exists()


def test_an_interrupted_epochs_weights_export_with_a_warning(cli, tmp_path, trained):
    saved = torch.load(trained["mnist"], weights_only=True)
    interrupted = tmp_path / "interrupted.pt"
    torch.save({**saved, "partial_epoch": 2}, interrupted)
    run = cli("export", interrupted, "--output", tmp_path / "m.pt")
    assert run.exit_code == 0, run.stderr
    assert "warning: " in run.stderr and "inside epoch 2 (interrupted)" in run.stderr
