"""Export formats: write a graph with its metadata, and load it back with the format's own runtime.

onnx: torch.onnx (dynamo) to one .onnx file, metadata in the model's metadata_props (one JSON value a key);
run by onnxruntime. torchscript: torch.jit.trace, metadata in the extra file torchtools.json; run by
torch.jit.load. exported: torch.export (an ExportedProgram, .pt2), the same extra file; run by
torch.export.load. safetensors: the model's state_dict (no code, no pickle), metadata in a JSON beside it;
loaded by safetensors.torch.load_file into a fresh model. Every file is written under a temporary name
(core/files.py) and renamed into place only when it has passed the caller's check (`Written.keep`); else it
is removed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from torchtools.core import files
from torchtools.core.errors import UserError

METADATA_FILE = "torchtools.json"
EXTRA_INSTALL = "pip install 'torchtools[export]'"


def check_available(format_: str) -> None:
    """The ONNX tools are an optional extra: without them, one error line saying how to get them."""
    if format_ != "onnx":
        return
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if not _importable(name)]
    if missing:
        raise UserError(f"--format onnx needs {', '.join(missing)}, not installed here: {EXTRA_INSTALL}")


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def metadata_path(path: Path) -> Path:
    """The JSON that travels beside a .safetensors file: m.safetensors -> m.json."""
    return Path(path).with_suffix(".json")


@dataclass
class Written:
    """An export under temporary names, until `keep` renames it into place (or `discard` removes it)."""

    path: Path  # the final name
    temporary: dict[Path, Path] = field(default_factory=dict)  # final name -> temporary file

    @property
    def file(self) -> Path:
        return self.temporary[self.path]

    @property
    def bytes(self) -> int:
        """The size of the export itself (a safetensors file's JSON beside it not counted)."""
        return self.file.stat().st_size

    def keep(self) -> list[Path]:
        for final, temp in self.temporary.items():
            files.commit(temp, final)  # the umask's mode, not mkstemp's private 0600
        return list(self.temporary)

    def discard(self) -> None:
        for temp in self.temporary.values():
            temp.unlink(missing_ok=True)


def _temporary(written: Written, final: Path) -> Path:
    # The final suffix last: torch.export.load reads only files ending in .pt2.
    written.temporary[final] = files.temporary(final, keep_suffix=True)
    return written.temporary[final]


def save(format_: str, graph: nn.Module, example: Tensor, dynamic: dict[int, str], path: Path,
         metadata: dict[str, Any], *, state: dict[str, Tensor]) -> Written:
    """Write `graph` (eval mode, `example` an input batch whose dims in `dynamic` stay free) as `format_`;
    `state` is what a safetensors export holds (the model's own state_dict)."""
    path = Path(path)
    written = Written(path)
    try:
        target = _temporary(written, path)
        graph.eval()
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")  # exporters warn about internals; the parity check is what counts
            if format_ == "safetensors":
                save_file({key: value.contiguous() for key, value in state.items()}, str(target),
                          metadata={"format": "pt"})
                _temporary(written, metadata_path(path)).write_text(files.strict_json(metadata, indent=1) + "\n")
            elif format_ == "torchscript":
                torch.jit.trace(graph, (example,)).save(str(target),
                                                        _extra_files={METADATA_FILE: files.strict_json(metadata)})
            else:
                program = _exported(graph, example, dynamic)
                if format_ == "exported":
                    torch.export.save(program, target, extra_files={METADATA_FILE: files.strict_json(metadata)})
                else:
                    _save_onnx(program, target, metadata)
    except OSError as error:  # a full disk: the one message of a failed write, nothing left behind
        written.discard()
        raise files.failed(path, error) from None
    except BaseException:
        written.discard()
        raise
    return written


def _exported(graph: nn.Module, example: Tensor, dynamic: dict[int, str]):
    name = next(iter(_argument_names(graph)))
    dims = {axis: torch.export.Dim(label) for axis, label in dynamic.items()}
    return torch.export.export(graph, (example,), dynamic_shapes={name: dims})


def _argument_names(graph: nn.Module):
    return inspect.signature(graph.forward).parameters


def _save_onnx(program, target: Path, metadata: dict[str, Any]) -> None:
    onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, output_names=["logits"])
    onnx_program.model.metadata_props.update({key: files.strict_json(value) for key, value in metadata.items()})
    onnx_program.save(str(target), external_data=False)


def load(format_: str, written: Written, *, fresh: Callable[[dict[str, Tensor]], nn.Module] | None = None,
         ) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """(a function from an input batch to logits, the metadata read back) of a written export, through the
    format's own runtime. `fresh` builds the graph around a state_dict (safetensors only)."""
    file = written.file
    if format_ == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        metadata = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
        return lambda batch: torch.from_numpy(session.run(None, {name: batch.numpy()})[0]), metadata
    if format_ == "safetensors":
        graph = fresh(load_file(str(file))).eval()
        return _no_grad(graph), json.loads(written.temporary[metadata_path(written.path)].read_text())
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load: "deprecated, switch to torch.export"
        if format_ == "torchscript":
            module = torch.jit.load(str(file), map_location="cpu", _extra_files=extra)
        else:
            module = torch.export.load(file, extra_files=extra).module()
    return _no_grad(module), json.loads(extra[METADATA_FILE] or "{}")


def _no_grad(module) -> Callable[[Tensor], Tensor]:
    def run(batch: Tensor) -> Tensor:
        with torch.no_grad():
            return module(batch)

    return run
