"""export: a trained model as ONNX, TorchScript, an ExportedProgram or safetensors, checked against torchtools.

The model is rebuilt from the checkpoint (one entry per command below) and wrapped in the graph of
torchtools.models.deployable: image models take the stored uint8 pictures and normalise inside, names
models the encoded names, the diabetes model the raw feature rows. The export is loaded back with its
own runtime and run on real inputs (or generated ones); beyond --tolerance it is removed and the
command exits 1.
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

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
        "--tolerance", min=0.0, help="Largest absolute logit difference from torchtools' own outputs.")] = 1e-4,
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
    from torchtools.core.output import console, say

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
    written = exports.save(fmt, kind.graph(network), kind.example(batch), kind.dynamic, output, metadata,
                           state=network.state_dict())
    seconds = time.perf_counter() - started
    try:
        model, read_back = exports.load(fmt, written, fresh=lambda state: kind.graph(_loaded(saved, state)))
        outputs = model(batch).float()
    except BaseException:
        written.discard()
        raise
    difference = (outputs - expected).abs().max().item() if outputs.shape == expected.shape else float("inf")
    agreement = (kind.top1(outputs) == kind.top1(expected)).float().mean().item() \
        if outputs.shape == expected.shape else 0.0
    good = difference <= tolerance and agreement == 1.0 and read_back == metadata
    summary = {"format": fmt, "path": str(output), "bytes": written.bytes, "seconds": round(seconds, 4),
               "max_abs_diff": difference, "top1_agreement": agreement, "samples": len(batch), "inputs": source,
               "tolerance": tolerance, "metadata": str(exports.metadata_path(output)) if fmt == "safetensors" else None}
    figures = f"largest |logit difference| {difference:.3g}, top-1 agreement {agreement:.1%} on {len(batch)} inputs"
    if not good:
        written.discard()
        why = "" if read_back == metadata else "; its metadata did not read back as written"
        console.print(f"[red]error:[/red] the {fmt} export differs from torchtools ({figures}, tolerance "
                      f"{tolerance:g}{why}); nothing written", soft_wrap=True)
        run.finish(metrics={}, source=str(checkpoint), model_command=saved["command"], export=summary)
        raise typer.Exit(1)
    files = written.keep()
    say(f"wrote {', '.join(map(str, files))} ({summary['bytes']:,} bytes, {seconds:.1f} s); {figures}")
    run.finish(metrics={}, source=str(checkpoint), model_command=saved["command"], export=summary)


def _rebuilt(saved: dict, checkpoint: Path):
    """The checkpoint's network with its weights, in eval mode, on the CPU."""
    from torchtools.core.errors import UserError

    try:
        return _loaded(saved, saved["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise UserError(f"{checkpoint} does not describe a model this torchtools can rebuild: "
                        f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
                        ) from None


def _loaded(saved: dict, state: dict):
    network = REBUILD[saved["command"]](saved)
    network.load_state_dict(state)
    return network.eval()
