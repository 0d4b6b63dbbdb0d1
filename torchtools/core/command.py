"""`@command`: a command's flow function becomes a Typer command with the shared options added.

The flow declares only its own options and takes `run: Run`; the decorator adds the shared options it
asks for (see options.SHARED) to the signature Typer reads, and on a call collects them into one Run,
which checks every path and option combination before the flow starts. Typer's context also tells which
options the user typed, so a resumed run can tell a changed option from a default (Run.config).
Nothing here imports torch: `torchtools --help` stays fast.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence

import typer

from torchtools.core.options import SHARED


def command(name: str, shared: Sequence[str]) -> Callable[[Callable], Callable]:
    def decorate(flow: Callable) -> Callable:
        hints = typing.get_type_hints(flow, include_extras=True)
        own = [parameter.replace(annotation=hints[parameter.name])
               for parameter in inspect.signature(flow).parameters.values() if parameter.name != "run"]
        added = [inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, annotation=SHARED[option][0],
                                   default=SHARED[option][1]) for option in shared]
        context = inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        parameters = [*own, *added, context]

        @functools.wraps(flow)
        def typer_command(**values):
            from torchtools.core.run import Run

            context = values.pop("context")
            run = Run.start(name, explicit=_typed_options(context, values),
                            **{option: values.pop(option) for option in shared})
            return flow(**values, run=run)

        typer_command.__signature__ = inspect.Signature(parameters)
        typer_command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return typer_command

    return decorate


def _typed_options(context: typer.Context, values: dict) -> frozenset[str]:
    """The parameters the user gave (command line or environment), not left at their defaults."""
    defaults = ("DEFAULT", "DEFAULT_MAP")
    return frozenset(name for name in values
                     if getattr(context.get_parameter_source(name), "name", "DEFAULT") not in defaults)
