"""The torchtools command line: every command is registered here, explicitly, in one list.

Command modules import torch inside their function bodies, so `torchtools --help` stays fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Optional

import typer
import typer.core

from torchtools import __version__
from torchtools.commands import (cifar, conv_demo, diabetes, export, fit_linear, fit_logistic, inspect_weights,
                                 mnist, names_rnn, to_gpu_bench, transfer)
from torchtools.core import help, stopping, threads
from torchtools.core.errors import UserError


def _usage_error(error: Exception) -> None:
    """Typer's usage errors (a value of the wrong type, an unknown choice or option, a missing value) end
    like every other mistake: one `error:` line naming what to read next, exit 2."""
    context = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError":  # bare `torchtools`: the help (core/help.py), as --help
        print(error.format_message())
        raise typer.Exit(2) from None
    if getattr(error, "exit_code", None) != 2 or not hasattr(error, "format_message"):
        raise error
    from torchtools.core.output import error as error_line

    path = context.command_path if context is not None else "torchtools"
    message = error.format_message().replace("Value error, ", "")
    error_line(f"{message} (see {path} --help)")
    raise typer.Exit(2) from None


class _OneLineErrors:
    def get_params(self, ctx):
        """A switch (--help, --version, --install-completion, ...) is shown without a value placeholder:
        Typer writes "<bool>" after every flag that names no metavar."""
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except Exception as error:  # the usage error classes are Typer's private copies of click's
            _usage_error(error)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except Exception as error:
            _usage_error(error)


class _Command(_OneLineErrors, typer.core.TyperCommand):
    def format_help(self, ctx, formatter):
        """The help laid out for an 80-column terminal (core/help.py), not Typer's panels."""
        formatter.write(help.render(self, ctx))


class _Group(_OneLineErrors, typer.core.TyperGroup):
    def format_help(self, ctx, formatter):
        """The commands and options laid out for an 80-column terminal (core/help.py)."""
        formatter.write(help.render_group(self, ctx))


app = typer.Typer(
    cls=_Group,
    name="torchtools",
    help="The classic PyTorch curriculum as fast, scriptable command-line tools.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _reporting_user_errors(command: Callable) -> Callable:
    """User-caused errors end with one line on stderr and exit 2. Every command runs inside the one stop
    path (core.stopping): Ctrl-C, SIGTERM or a closed pipe ends it with one line and exit 130, 143 or 141.
    No tracebacks."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        with stopping.handling():
            try:
                return command(*args, **kwargs)
            except UserError as error:
                from torchtools.core.output import error as error_line

                error_line(str(error))
                raise typer.Exit(2) from None

    return run


COMMANDS: list[tuple[str, Callable]] = [
    ("fit-linear", fit_linear.fit_linear),
    ("fit-logistic", fit_logistic.fit_logistic),
    ("diabetes", diabetes.diabetes),
    ("mnist", mnist.mnist),
    ("cifar", cifar.cifar),
    ("transfer", transfer.transfer),
    ("names-rnn", names_rnn.names_rnn),
    ("conv-demo", conv_demo.conv_demo),
    ("inspect-weights", inspect_weights.inspect_weights),
    ("to-gpu-bench", to_gpu_bench.to_gpu_bench),
    ("export", export.export),
]

for _name, _command in COMMANDS:
    app.command(_name, cls=_Command)(_reporting_user_errors(_command))


def _print_version(value: bool) -> None:
    if value:
        print(f"torchtools {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option(
        "--version", help="Print the version and exit.", callback=_print_version, is_eager=True)] = None,
) -> None:
    """The classic PyTorch curriculum as fast, scriptable command-line tools."""


def main() -> None:
    threads.configure()  # before anything imports torch: OpenMP reads these once, as torch loads it
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, never a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    except SystemExit as ended:
        # A process of a torchrun job leaves through core.distributed; the module is looked up, not imported:
        # it imports torch, which --help must not load, and a run that joined a job has loaded it already.
        distributed = sys.modules.get("torchtools.core.distributed")
        if distributed is not None:
            distributed.leave(ended.code)
        raise
