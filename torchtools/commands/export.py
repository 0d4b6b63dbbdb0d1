"""export: a trained model as ONNX, TorchScript, an ExportedProgram or safetensors, checked against torchtools.

The model is rebuilt from the checkpoint (one entry per command below) and wrapped in the graph of
torchtools.models.deployable: image models take the stored uint8 pictures and normalise inside, names
models the encoded names, the diabetes model the raw feature rows. The export is loaded back with its
own runtime and run on real inputs (or generated ones); beyond --tolerance it is removed and the
command exits 1.
"""

from __future__ import annotations

import functools
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from torchtools.core import options
from torchtools.core.command import command

GENERATED_SEED = 0


class Format(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    exported = "exported"
    safetensors = "safetensors"


def _mnist(saved: dict):
    from torchtools.models.mnist import build

    return build(saved["config"]["model"])


def _cifar(saved: dict):
    from torchtools.models.cifar import build

    return build(saved["config"]["model"], len(saved["classes"]))


def _transfer(saved: dict):
    from torchtools.models.pretrained import build

    return build(saved["config"]["arch"], len(saved["classes"]))


def _names(saved: dict):
    from torchtools.data.names import Vocabulary
    from torchtools.models.names import NameClassifier

    config = saved["config"]
    return NameClassifier(len(Vocabulary(saved["vocabulary"])), len(saved["labels"]), hidden=config["hidden"],
                          layers=config["layers"], bidirectional=config["bidirectional"], cell=config["cell"])


def _diabetes(saved: dict):
    from torchtools.models.tabular import mlp

    return mlp(saved["features"], saved["config"]["hidden"], saved["config"]["activation"])


# One rebuild per command: the network its checkpoint's config describes, built as the command builds it.
REBUILD = {"mnist": _mnist, "cifar": _cifar, "transfer": _transfer, "names-rnn": _names, "diabetes": _diabetes}


@command("export", ("quiet", "json"))
def export(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint of mnist, cifar, transfer, names-rnn or diabetes (--save or .best.pt).",
        show_default=False)],
    format_: Annotated[Format, typer.Option(
        "--format", help="onnx (.onnx, onnxruntime), torchscript (.pt, torch.jit.load), exported (.pt2, "
                         "torch.export.load) or safetensors (.safetensors weights + a .json beside).",
        show_default=False)],
    output: Annotated[Path, typer.Option("--output", help="The file to write.", show_default=False)],
    inputs: Annotated[Optional[list[str]], typer.Option(
        "--inputs", help="What the check runs on: pictures (files, folders, quoted globs) for image models, a "
                         "name,label CSV or <Label>.txt folder for names-rnn, a CSV of rows for diabetes. "
                         "Default: the checkpoint's dataset where it is at hand, else generated inputs.",
        show_default=False)] = None,
    samples: Annotated[int, typer.Option("--samples", min=2, help="How many inputs the check runs on.")] = 32,
    tolerance: Annotated[float, typer.Option(
        "--tolerance", min=0.0, help="Largest absolute logit difference from torchtools' own outputs, times the "
                                     "largest |logit| where that is above 1 (float32 rounding is relative).")] = 1e-4,
    trust_pickle: options.TrustPickle = False,
    *,
    run,
) -> None:
    """Export a trained model for use outside torchtools, and check it gives torchtools' logits.

    The class names and the preprocessing travel with the file (ONNX metadata_props, the torchtools.json
    extra file of TorchScript and ExportedProgram files, the JSON beside a .safetensors file). The batch
    dimension (and a names model's length) stays free.
    """
    import json

    import torch

    from torchtools import __version__
    from torchtools.commands.export_inputs import KINDS
    from torchtools.core import exports
    from torchtools.core.checkpoints import load_checkpoint
    from torchtools.core.errors import UserError
    from torchtools.core.output import say

    fmt = format_.value
    run.check_output(output, "--output", suffixes=(exports.SUFFIXES[fmt],))
    written_names = [output] + ([exports.metadata_path(output)] if fmt == "safetensors" else [])
    if any(name.resolve() == checkpoint.resolve() for name in written_names):
        raise UserError(f"--output {output} would overwrite the checkpoint {checkpoint}; choose another name")
    exports.check_available(fmt)
    saved = load_checkpoint(checkpoint, trust_pickle=trust_pickle)
    if saved.get("command") not in REBUILD:
        raise UserError(f"{checkpoint} was saved by `torchtools {saved.get('command')}`; export takes checkpoints of "
                        f"{', '.join(REBUILD)}")
    kind = KINDS[saved["command"]](saved)
    network = _rebuilt(saved, checkpoint)
    batch, source = kind.inputs(inputs, samples, seed=GENERATED_SEED)
    say(f"{checkpoint}: torchtools {saved['command']}, {kind.describe()}; checking on {len(batch)} {source}")
    with torch.no_grad():
        expected = kind.reference(network, batch).float()
    metadata = json.loads(json.dumps({"torchtools": __version__, "command": saved["command"],  # as JSON reads it
                                      "config": saved.get("config"), **kind.metadata()}))

    started = time.perf_counter()
    try:
        written = exports.save(fmt, kind.graph(network), kind.example(batch), kind.dynamic, output, metadata,
                               state=network.state_dict())
    except Exception as error:  # an exporter's own failure: no user mistake, but no traceback either
        _fail(f"{fmt} could not export this model: {_first_line(error)}")
    seconds = time.perf_counter() - started
    try:
        model, read_back = exports.load(fmt, written, fresh=lambda state: kind.graph(_loaded(saved, state)))
        outputs = model(batch).float()
    except BaseException as error:
        written.discard()
        if not isinstance(error, Exception):
            raise
        _fail(f"the {fmt} export does not run in its own runtime: {_first_line(error)}")
    check = {"format": fmt, "path": str(output), "bytes": written.bytes, "seconds": round(seconds, 4),
             **_compare(outputs, expected, kind.top1, tolerance), "samples": len(batch), "inputs": source,
             "metadata": str(exports.metadata_path(output)) if fmt == "safetensors" else None}
    figures = (f"largest |logit difference| {check['max_abs_diff']:.3g}, top-1 agreement "
               f"{check['top1_agreement']:.1%} on {len(batch)} inputs")
    finish = functools.partial(run.finish, metrics={}, source=str(checkpoint), model_command=saved["command"],
                               export=check)
    if not check["passed"] or read_back != metadata:
        written.discard()
        why = "" if read_back == metadata else "; its metadata did not read back as written"
        _fail(f"the {fmt} export differs from torchtools ({figures}; allowed {check['allowed_diff']:.3g}: "
              f"--tolerance {tolerance:g} x the largest |logit| {check['max_abs_logit']:.3g}{why}); nothing written",
              finish)
    files = written.keep()
    say(f"wrote {', '.join(map(str, files))} ({check['bytes']:,} bytes, {seconds:.1f} s); {figures}")
    finish()


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
    from torchtools.core.output import console

    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    if finish is not None:
        finish()
    raise typer.Exit(1)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _rebuilt(saved: dict, checkpoint: Path):
    """The checkpoint's network with its weights, in eval mode, on the CPU."""
    from torchtools.core.errors import UserError

    try:
        return _loaded(saved, saved["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise UserError(f"{checkpoint} does not describe a model this torchtools can rebuild: "
                        f"{_first_line(error)}") from None


def _loaded(saved: dict, state: dict):
    network = REBUILD[saved["command"]](saved)
    network.load_state_dict(state)
    return network.eval()
