"""export: a trained model as ONNX, TorchScript, an ExportedProgram or safetensors, checked against torchtools.

The model is rebuilt from the checkpoint by its command's own `build_model` (EXPORTED below) and wrapped in the graph of
torchtools.models.deployable: image models take the stored uint8 pictures and normalise inside, names
models the encoded names, the diabetes model the raw feature rows. The export is loaded back with its
own runtime and run on real inputs (or generated ones); beyond --tolerance it is removed and the
command exits 1.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from torchtools import __version__
from torchtools.commands import cifar, diabetes, mnist, names_rnn, transfer
from torchtools.core.command import command
from torchtools.core.config import READS, Setting, file_name
from torchtools.core.errors import UserError, first_line
from torchtools.core.options import TRUST_PICKLE, OutputSettings
from torchtools.core.paths import Output

if TYPE_CHECKING:
    from torchtools.core.run import Run

GENERATED_SEED = 0
# Each format's file suffixes, the first its usual one (.torchscript is ultralytics' name for TorchScript).
FORMATS = {"onnx": (".onnx",), "torchscript": (".pt", ".torchscript"), "exported": (".pt2",),
           "safetensors": (".safetensors",)}
BY_SUFFIX = {suffix: name for name, suffixes in FORMATS.items() for suffix in suffixes}


@dataclass(frozen=True, kw_only=True)
class ExportConfig(OutputSettings):
    checkpoint: Path = Setting("CHECKPOINT", role=READS,
                               help="A checkpoint of mnist, cifar, transfer, names-rnn or diabetes (--save, or its "
                                    ".best.pt).")(None)
    format: str | None = Setting(
        "--format", choices=tuple(FORMATS), show_default=False,
        help="onnx (.onnx, run by onnxruntime), torchscript (.pt or .torchscript, torch.jit.load), exported (.pt2, an "
             "ExportedProgram for torch.export.load) or safetensors (.safetensors weights, a .json beside). "
             "Default: from the --output suffix.")()
    output: Path | None = Setting("--output", "-o", show_default=False, parse=file_name,
                                  help="The file to write.")()
    inputs: list[str] | None = Setting(
        "--inputs", show_default=False, metavar="PATH", role=READS,
        help="What the check runs on: pictures (files, folders, quoted globs) for image models, a name,label CSV or "
             "<Label>.txt folder for names-rnn, a CSV of rows for diabetes. Default: real ones from the data the "
             "checkpoint trained on (its held-out pictures), while it is there, else from the data root "
             "($TORCHTOOLS_DATA, else data/), else generated inputs.")()
    samples: int = Setting("--samples", min=2, max=100_000, help="How many inputs the check runs on.")(32)
    tolerance: float = Setting(
        "--tolerance", min=0.0, max=1.0,
        help="Largest absolute logit difference from torchtools' own outputs, times the largest |logit| where "
             "that is above 1 (float32 rounding is relative).")(1e-4)
    trust_pickle: bool = TRUST_PICKLE(False)

    def writes(self) -> list[Output]:
        """--output (ending in --format's suffix; without --format, the flow names the format from it) and a
        safetensors export's JSON beside it."""
        from torchtools.core.exports import metadata_path

        if self.output is None:
            return []  # the flow says what to pass
        fmt = self.format or BY_SUFFIX.get(self.output.suffix.lower())
        outputs = [Output(self.output, "--output", suffixes=FORMATS[self.format] if self.format else ())]
        if fmt == "safetensors":
            outputs.append(Output(metadata_path(self.output), "--output's JSON file"))
        return outputs


# The commands whose checkpoints export: each one's config (the file's config and state are checked as the
# command checks them) and its build_model, the one the command builds its own network with.
EXPORTED = {"mnist": (mnist.MnistConfig, mnist.build_model), "cifar": (cifar.CifarConfig, cifar.build_model),
            "transfer": (transfer.TransferConfig, transfer.build_model),
            "names-rnn": (names_rnn.NamesConfig, names_rnn.build_model),
            "diabetes": (diabetes.DiabetesConfig, diabetes.build_model)}


@command("export", ExportConfig)
def export(run: Run[ExportConfig]) -> None:
    """Export a trained model for use outside torchtools, and check it gives torchtools' logits.

    The class names and the preprocessing travel with the file (ONNX metadata_props, the torchtools.json
    extra file of TorchScript and ExportedProgram files, the JSON beside a .safetensors file). The batch
    dimension (and a names model's length) stays free.
    """
    import torch

    from torchtools.flows.export_inputs import KINDS
    from torchtools.core import exports
    from torchtools.core.output import say, wrote

    config = run.config
    fmt = _format(config)
    exports.check_available(fmt)
    saved, model_config = _checkpoint(config)
    kind, network = KINDS[saved["command"]](saved), _rebuilt(saved, model_config, config.checkpoint)
    batch, source = kind.inputs(config.inputs, config.samples, seed=GENERATED_SEED)
    say(f"{config.checkpoint}: torchtools {saved['command']}, {kind.describe()}; checking on {len(batch)} {source}")
    with torch.no_grad():
        expected = kind.reference(network, batch).float()
    metadata = _metadata(saved, kind)

    started = time.perf_counter()
    try:
        written = exports.save(fmt, kind.graph(network), kind.example(batch), kind.dynamic, config.output, metadata,
                               state=network.state_dict())
    except UserError:  # a failed write (a full disk): its own one line
        raise
    except Exception as error:  # an exporter's own failure: no user mistake, but no traceback either
        _fail(f"{fmt} could not export this model: {_first_line(error)}")
    seconds = time.perf_counter() - started
    outputs, read_back = _read_back(fmt, written, kind, saved, model_config, batch)
    check = {"format": fmt, "path": str(config.output), "bytes": written.bytes, "seconds": round(seconds, 4),
             **_compare(outputs, expected, kind.top1, config.tolerance), "samples": len(batch), "inputs": source,
             "metadata": str(exports.metadata_path(config.output)) if fmt == "safetensors" else None}
    figures = (f"largest |logit difference| {check['max_abs_diff']:.3g}, top-1 agreement "
               f"{check['top1_agreement']:.1%} on {len(batch)} inputs")
    finish = functools.partial(run.finish, metrics={}, source=str(config.checkpoint), model_command=saved["command"],
                               export=check)
    if not check["passed"] or read_back != metadata:
        written.discard()
        why = "" if read_back == metadata else "; its metadata did not read back as written"
        _fail(f"the {fmt} export differs from torchtools ({figures}; allowed {check['allowed_diff']:.3g}: --tolerance "
              f"{config.tolerance:g} x the largest |logit| {check['max_abs_logit']:.3g}{why}); nothing written", finish)
    files = written.keep()
    say(f"export checked: {check['bytes']:,} bytes, {seconds:.1f} s; {figures}")
    for file in files:
        wrote("export", file)
    finish()


def _checkpoint(config: ExportConfig) -> tuple[dict, Any]:
    """The checkpoint, checked as every command checks one it loads, and of a command that exports; and its
    config."""
    from torchtools.core.checkpoints import check_state, load_checkpoint
    from torchtools.core.output import warn

    saved = load_checkpoint(config.checkpoint, trust_pickle=config.trust_pickle)
    if saved.get("command") not in EXPORTED:
        raise UserError(f"{config.checkpoint} was saved by `torchtools {saved.get('command')}`; export takes "
                        f"checkpoints of {', '.join(EXPORTED)}")
    config_type = EXPORTED[saved["command"]][0]
    check_state(saved, config.checkpoint, config_type.STATE)
    if saved.get("partial_epoch"):
        warn(f"{config.checkpoint} holds weights from inside epoch {saved['partial_epoch']} (interrupted); the "
             "export is of those weights")
    return saved, config_type.from_saved(saved.get("config"), source=config.checkpoint)


def _metadata(saved: dict, kind) -> dict:
    """What travels with the export, as JSON reads it back (lists, not tuples)."""
    return json.loads(json.dumps({"torchtools": __version__, "command": saved["command"],
                                  "config": saved.get("config"), **kind.metadata()}))


def _read_back(fmt: str, written, kind, saved: dict, model_config, batch):
    """(the export's logits on `batch`, its metadata), through the format's own runtime; an export that does
    not load or run is removed, and exit 1."""
    from torchtools.core import exports

    try:
        model, metadata = exports.load(fmt, written,
                                       fresh=lambda state: kind.graph(_loaded(saved, model_config, state)))
        return model(batch).float(), metadata
    except BaseException as error:
        written.discard()
        if not isinstance(error, Exception):
            raise
        _fail(f"the {fmt} export does not run in its own runtime: {_first_line(error)}")


def _format(config: ExportConfig) -> str:
    """--format, or the one the --output suffix names; the two must agree."""
    if config.checkpoint is None or config.output is None:
        raise UserError("pass the CHECKPOINT to export and --output FILE (.onnx, .pt, .torchscript, .pt2 or "
                        ".safetensors)")
    by_suffix = BY_SUFFIX.get(config.output.suffix.lower())
    if config.format is None and by_suffix is None:
        raise UserError(f"--output {config.output}: name a format with --format, or end the name in "
                        f"{', '.join(BY_SUFFIX)}")
    return config.format or by_suffix


def _compare(outputs, expected, top1, tolerance: float) -> dict:
    """The parity figures. float32 rounding is relative, so the allowance grows with the logits once they pass 1
    (an under-trained resnet's reach the hundreds, where one float32 step is 3e-5)."""
    same_shape = outputs.shape == expected.shape
    difference = (outputs - expected).abs().max().item() if same_shape else float("inf")
    agreement = (top1(outputs) == top1(expected)).float().mean().item() if same_shape else 0.0
    largest = expected.abs().max().item()
    allowed = tolerance * max(1.0, largest)
    return {"max_abs_diff": difference, "top1_agreement": agreement, "tolerance": tolerance, "max_abs_logit": largest,
            "allowed_diff": allowed, "passed": difference <= allowed and agreement == 1.0}


def _fail(message: str, finish=None) -> None:
    """The export is not good: one error line, the summary (with the figures) where there are any, exit 1."""
    from torchtools.core.output import error

    error(message)
    if finish is not None:
        finish()
    raise typer.Exit(1)


def _rebuilt(saved: dict, model_config, checkpoint: Path):
    """The checkpoint's network with its weights, in eval mode, on the CPU."""
    try:
        return _loaded(saved, model_config, saved["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise UserError(f"{checkpoint} does not describe a model this torchtools can rebuild: "
                        f"{_first_line(error)}") from None


def _loaded(saved: dict, model_config, state: dict):
    network = EXPORTED[saved["command"]][1](model_config, saved)
    network.load_state_dict(state)
    return network.eval()


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"
