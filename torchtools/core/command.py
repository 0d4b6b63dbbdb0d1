"""`@command(name, Config)`: a flow `def flow(run)` becomes a Typer command whose options are the config's fields.

Each field's Setting gives the option (flag, help, default, panel, choices); Typer parses the types, and
`Config.build` checks every value, so a bad one is the same `error:` line as in a checkpoint. Typer's
context tells which options the user typed, so a resumed run can tell a changed option from a default
(Run.start). Nothing here imports torch: `torchtools --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import config_files, help
from torchtools.core.config import DEPENDS, READS, Config, Setting, _base, _optional


def command(name: str, config_type: type[Config]) -> Callable[[Callable], Callable]:
    def decorate(flow: Callable) -> Callable:
        parameters = [_parameter(field, config_type) for field in dataclasses.fields(config_type)
                      if "setting" in field.metadata]
        parameters.append(inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

        @functools.wraps(flow)
        def typer_command(**values):
            from torchtools.core.run import Run

            context = values.pop("context")
            typed = _typed_options(context, values)
            values = {key: _plain(value) for key, value in values.items()}
            if values.get("config") is not None:  # the file's values count as typed; the typed options win
                values, typed = config_files.merged(name, config_type, values, typed)
            # Left out, a DEPENDS option takes its value from the others (Config.fill).
            values = {key: DEPENDS if value is None and _depends(config_type, key) else value
                      for key, value in values.items()}
            run = Run.start(name, config_type, values, typed)
            try:
                return flow(run)
            finally:
                run.close()

        typer_command.__signature__ = inspect.Signature(parameters)
        typer_command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        typer_command.__doc__ = flow.__doc__
        return typer_command

    return decorate


def _parameter(field: dataclasses.Field, config_type: type[Config]) -> inspect.Parameter:
    setting: Setting = field.metadata["setting"]
    kind = typing.get_type_hints(config_type)[field.name]
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    depends = default is DEPENDS
    metavar = _metavar(setting, kind)
    help_text = setting.help
    if metavar == CHOICE:
        help_text = f"{help_text} One of: {', '.join(setting.choices)}.".strip()
    if depends:
        help_text = f"{help_text} {config_type.depends_help(field.name)}".strip()
    parsed, choice = _typer_type(field.name, setting, kind)
    if setting.parse is not None or setting.words:  # typed as text, parsed by the Setting: "6,4" -> [6, 4]
        parsed, default = str, ",".join(map(str, default)) if isinstance(default, list) else default
    if depends or default == []:
        default = None  # not given: the recipe's value, or no items
    if default is None or _optional(kind):
        parsed = Optional[parsed]
    if choice is not None and isinstance(default, str):
        default = choice(default)
    if not setting.flag.startswith("-"):  # a positional argument, named in capitals
        # Required, but not by click: a --config file may give it (checked with the other values by Config.build);
        # --help shows it required (core/help.py).
        declaration = typer.Argument(help=help_text, show_default=False, metavar=setting.flag)
    else:
        # A data option not put in a panel is shown with the data (core/help.py puts that panel first).
        panel = setting.panel or (help.DATA_PANEL if setting.role == READS else None)
        declaration = typer.Option(*_flags(setting), help=help_text, rich_help_panel=panel,
                                   show_default=setting.show_default and not depends, metavar=metavar,
                                   envvar=setting.envvar)
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[parsed, declaration])


CHOICE = "CHOICE"  # the metavar of choices too long to list after the flag; the help lists them
CHOICES_SHOWN = 24  # choices a|b up to this long are the metavar


def _metavar(setting: Setting, kind) -> str:
    """What --help shows after the flag: nothing for a switch, the choices (a|b), else a word for the type."""
    base = _base(kind)
    if base is bool:
        return ""
    if setting.metavar is not None:
        return setting.metavar
    if setting.choices:
        choices = "|".join(setting.choices)
        return choices if len(choices) <= CHOICES_SHOWN else CHOICE
    if typing.get_origin(base) is list:
        return "TEXT"
    return {int: "INT", float: "NUMBER", Path: "PATH"}.get(base, "TEXT")


def _flags(setting: Setting) -> list[str]:
    first = f"{setting.flag}/{setting.negative}" if setting.negative else setting.flag
    return [first, *setting.aliases, *([setting.short] if setting.short else [])]


def _typer_type(name: str, setting: Setting, kind) -> tuple[type, type[Enum] | None]:
    """(the type Typer parses, its Enum of choices or None): choices are shown in --help and completed."""
    base = _base(kind)
    if base is Path:  # the text as typed: "" is no path (Config refuses it), where Typer's Path makes it "."
        return str, None
    if setting.choices is None:
        return base, None
    choice = Enum(f"{name.title().replace('_', '')}Choice", {value: value for value in setting.choices}, type=str)
    return (list[choice] if typing.get_origin(base) is list else choice), choice


def _plain(value):
    """Typer's choices and tuples as the plain values a config holds."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _depends(config_type: type[Config], name: str) -> bool:
    field = next(field for field in dataclasses.fields(config_type) if field.name == name)
    return field.default is DEPENDS


def _typed_options(context: typer.Context, values: dict) -> frozenset[str]:
    """The parameters the user gave (command line or environment), not left at their defaults."""
    defaults = ("DEFAULT", "DEFAULT_MAP")
    return frozenset(name for name in values
                     if getattr(context.get_parameter_source(name), "name", "DEFAULT") not in defaults)
