"""inspect-weights: every tensor of a weights file or checkpoint; compare with an architecture; diff two files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools.core import numbers
from torchtools.core.command import command
from torchtools.core.config import READS, Setting
from torchtools.core.options import TRUST_PICKLE, TensorboardSettings, tensorboard_output
from torchtools.core.paths import Output

if TYPE_CHECKING:
    from torchtools.core.run import Run


@dataclass(frozen=True, kw_only=True)
class InspectConfig(TensorboardSettings):
    file: Path = Setting("FILE", role=READS,
                         help="A state_dict (.pth/.pt, or .safetensors), a checkpoint, a torchtools checkpoint, or "
                              "torchvision's published weights by name (imagenet with --arch, "
                              "ResNet34_Weights.IMAGENET1K_V1).")(None)
    filter: str | None = Setting("--filter", show_default=False,
                                 help="Only tensors whose name matches this regular expression (re.search).")()
    arch: str | None = Setting("--arch", show_default=False,
                               help="Compare with this torchvision classifier: matching, missing, unexpected and "
                                    "shape-mismatched keys.")()
    classes: int = Setting("--classes", min=1, max=2**20, help="Outputs of the --arch model.")(1000)
    diff: Path | None = Setting(
        "--diff", show_default=False, role=READS,
        help="Another weights file: the largest absolute difference of every shared tensor.")()
    histograms: bool = Setting("--histograms", help="Write a weight histogram per tensor to TensorBoard "
                                                    "(RUNS_DIR/inspect-weights/...).")(False)
    trust_pickle: bool = TRUST_PICKLE(False)

    def writes(self) -> list[Output]:
        """--histograms writes a TensorBoard run."""
        return [tensorboard_output(self.runs_dir, hint="pass --runs-dir DIR")] if self.histograms else []


@command("inspect-weights", InspectConfig)
def inspect_weights(run: Run[InspectConfig]) -> None:
    """Show every tensor in a weights file: shape, dtype, size and value statistics, with totals.

    Says what the file is (a bare state_dict, torchvision weights for a named architecture, a torchtools
    checkpoint with its epoch, metrics and config). Loads with weights_only=True; .safetensors files with
    safetensors' own loader (no pickle).
    """
    from torchtools.lessons import weights as inspection
    from torchtools.core.tensorboard import open_tensorboard
    from torchtools.models.pretrained import key_summary, read_weights
    from torchtools.core.output import print_table, say

    config = run.config
    file, filter_, arch, classes, other = config.file, config.filter, config.arch, config.classes, config.diff
    weights = read_weights(file, arch=arch, trust_pickle=config.trust_pickle)
    kind, inferred = inspection.describe(weights)
    say(f"{file}: {kind}")
    checkpoint_info = None
    if weights.checkpoint is not None:
        checkpoint_info = {key: weights.checkpoint.get(key)
                           for key in ("command", "epoch", "partial_epoch", "metrics", "config")}
        if checkpoint_info["partial_epoch"]:
            say(f"weights from inside epoch {checkpoint_info['partial_epoch']} (interrupted; no metrics for them)")
        for key in ("metrics", "config"):
            say(f"{key}: " + ", ".join(f"{name} {value}" for name, value in (checkpoint_info[key] or {}).items()))
        if checkpoint_info["config"]:
            command = checkpoint_info["command"]
            say(f"replay: torchtools {command} --print-config --checkpoint {file} > run.yaml, then torchtools "
                f"{command} --config run.yaml")
    state = inspection.select(weights.state, filter_)
    rows = [inspection.tensor_row(name, value) for name, value in state.items()]
    columns = ["name", "shape", "dtype", "params", "kind", "mean", "std", "min", "max", "zeros"]
    print_table(f"{len(rows)} of {len(weights.state)} tensors", columns,
                [(row["name"], "x".join(map(str, row["shape"])) or "scalar", row["dtype"], f"{row['params']:,}",
                  "buffer" if row["buffer"] else "param",
                  *("-" if row[key] is None else row[key] for key in ("mean", "std", "min", "max")),
                  numbers.share(row["zeros"])) for row in rows])
    total = inspection.totals(state)
    say(f"total: {total['params']:,} parameters, {total['buffer_values']:,} buffer values, "
        f"{numbers.count(total['bytes'])} bytes ({numbers.size(total['bytes'])})")

    comparison = model_summary = None
    if arch is not None:
        comparison = inspection.compare(state, arch, classes)
        say(f"against {arch} ({classes} classes): {comparison['matching']} matching, "
            f"{len(comparison['missing'])} missing, {len(comparison['unexpected'])} unexpected, "
            f"{len(comparison['mismatched'])} shape-mismatched")
        mismatched = [f"{item['name']} (file {item['file_shape']}, {arch} {item['arch_shape']})"
                      for item in comparison["mismatched"]]
        for name, keys in (("missing", comparison["missing"]), ("unexpected", comparison["unexpected"]),
                           ("shape-mismatched", mismatched)):
            say(f"{name}: {key_summary(keys)}")
        model_summary = _arch_summary(arch, classes)
    differences = None
    if other is not None:
        other_state = read_weights(other, trust_pickle=config.trust_pickle).state
        differences = inspection.diff(state, inspection.select(other_state, filter_))
        print_table(f"largest absolute difference, {file} vs {other}", ["name", "max |a - b|"],
                    [(item["name"], item["max_abs_diff"]) for item in differences["tensors"]])
        for name in ("mismatched", "only_in_file", "only_in_other"):
            if differences[name]:
                say(f"{name.replace('_', ' ')}: {key_summary(differences[name])}")
    histogram_dir = None
    if config.histograms:
        writer = open_tensorboard(config.runs_dir, "inspect-weights")
        written = inspection.write_histograms(writer, state)
        writer.close()
        histogram_dir = writer.log_dir
        say(f"{written} histograms written: tensorboard --logdir {histogram_dir}")
    run.finish(file_kind=kind, arch=inferred, tensors=rows, total_params=total["params"],
               total_bytes=total["bytes"], checkpoint_info=checkpoint_info, comparison=comparison,
               diff=differences, histograms=histogram_dir, model_summary=model_summary)


def _arch_summary(arch: str, classes: int) -> dict:
    """The --arch model's layers on a 224x224 picture, worked out on the meta device (shapes only, no memory)."""
    import torch

    from torchtools.core.summary import summarise
    from torchtools.models.pretrained import build

    model = build(arch, classes, shapes_only=True)
    device = next(model.parameters()).device
    return summarise(model, torch.zeros(2, 3, 224, 224, device=device), f"{arch}, {classes} classes, 224x224 input")
