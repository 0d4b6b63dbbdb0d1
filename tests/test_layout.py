"""Where imports stand: at the top of each module, and inside a function only for a reason this file names.

A function body may import (1) in a module that `torchtools --help` loads, what that help leaves out and must
keep out (torch, NumPy, rich and the torchtools modules that pull them in: tests/test_cli.py keeps --help
free of torch); (2) anywhere, a package in LATE, which only some runs use and which costs a run that does
not; (3) a cycle in CYCLES.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "torchtools"
LATE = {
    "onnxruntime": "the export extra",
    "timm": "the timm extra",
    "matplotlib": "only a run that draws: about 0.45 s to import",
    "torch.utils.tensorboard": "pulls in tensorboard (about 0.1 s): only a run that writes logs",
    "torchvision": "about 1.5 s to import beside torch: only a run that downloads a dataset, reads MNIST's "
                   "classes or builds a torchvision model",
}
CYCLES: dict[tuple[str, str], str] = {}  # (module, what it imports late): the cycle a top-level import would close


def _help_modules() -> set[str]:
    """Every module loaded by `torchtools --help` and by each command's --help."""
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from torchtools.cli import COMMANDS, app\n"
            "for args in [['--help']] + [[name, '--help'] for name, _ in COMMANDS]:\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
            "print(' '.join(sys.modules))")
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _file(module: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement loads: `from torchtools.core import plots` loads torchtools.core.plots."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [f"{node.module}.{alias.name}" if _file(f"{node.module}.{alias.name}") else node.module
            for alias in node.names]


def _top_imports(path: Path) -> list[str]:
    """What a module imports as it loads (not under `if TYPE_CHECKING:`)."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and not _in_function(node, child):
                found += _targets(child)
    return found


def _in_function(root: ast.AST, node: ast.AST) -> bool:
    return any(isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef)) and node in ast.walk(outer)
               for outer in ast.walk(root))


def _heavy(module: str, light: set[str], seen: set[str]) -> bool:
    """Loading `module` loads a package that --help does not (torch, NumPy, rich, ...)."""
    if module in seen:
        return False
    seen.add(module)
    if module.split(".")[0] != "torchtools":
        return module.split(".")[0] not in sys.stdlib_module_names and module.split(".")[0] not in light
    path = _file(module)
    return path is not None and any(_heavy(target, light, seen) for target in _top_imports(path))


def _local_imports(path: Path):
    tree = ast.parse(path.read_text())
    seen = set()
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in seen:
                    seen.add(node.lineno)
                    yield node


def _late(target: str) -> bool:
    return any(target == name or target.startswith(f"{name}.") for name in LATE)


def test_imports_stand_at_the_top_unless_named_here():
    light = _help_modules()
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _name(path)
        for node in _local_imports(path):
            for target in _targets(node):
                kept_from_help = module in light and target not in light and _heavy(target, light, set())
                if not (kept_from_help or _late(target) or (module, target) in CYCLES):
                    wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert not wrong, "imports that belong at the top of their module:\n" + "\n".join(wrong)
