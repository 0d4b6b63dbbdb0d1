"""The command line as a whole: help, version, startup cost, device errors, python -m."""

import subprocess
import sys
from pathlib import Path

from conftest import assert_user_error, run_torchtools

ALL_COMMANDS = ["fit-linear", "fit-logistic", "diabetes", "mnist", "cifar", "transfer", "names-rnn", "conv-demo",
                "inspect-weights", "to-gpu-bench"]


def test_no_arguments_shows_help_listing_every_command(cli):
    run = cli()
    output = run.stdout + run.stderr
    assert "Usage" in output
    for command in ALL_COMMANDS:
        assert command in output


def test_every_command_has_help_without_importing_torch():
    """`torchtools COMMAND --help` answers for all ten commands, and none of them pulls in torch to do it."""
    code = (
        "import sys\n"
        "from torchtools.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"for command in {ALL_COMMANDS!r}:\n"
        "    r = CliRunner().invoke(app, [command, '--help'])\n"
        "    assert r.exit_code == 0 and 'Usage' in r.stdout, (command, r.output)\n"
        "print(sorted(name for name in ('torch', 'torchvision', 'cv2', 'numpy') if name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_version(cli):
    from torchtools import __version__

    run = cli("--version")
    assert run.exit_code == 0
    assert run.stdout.strip() == f"torchtools {__version__}"


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from torchtools.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False", "torchtools --help imported torch"


def test_python_dash_m_runs_a_command(tmp_path):
    run = run_torchtools("--help", cwd=tmp_path)
    assert run.exit_code == 0
    assert "fit-linear" in run.stdout


def test_unknown_device_is_one_line_exit_2(cli):
    assert_user_error(cli("fit-linear", "--device", "tpu"), "unknown device")


def test_absent_cuda_device_is_refused_not_silently_replaced(cli):
    import torch

    if torch.cuda.is_available():
        run = cli("fit-linear", "--device", f"cuda:{torch.cuda.device_count()}")
        assert_user_error(run, "cuda")
    else:
        assert_user_error(cli("fit-linear", "--device", "cuda"), "CUDA is not available")


def test_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "torchtools"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("torchtools ")
