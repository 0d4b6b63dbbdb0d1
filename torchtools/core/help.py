"""A command's --help, laid out for an 80-column terminal: the help text gets most of the width.

Typer's rich panels give the flag, the metavar and the help text a column each, which leaves about 19
characters of help at 80 columns and cuts long metavars with "…". Here each option is its flags and
metavar, then its help (on the same line when the flags are short) wrapped to the terminal, with its
default, environment variable and "Required." said in the one form "Default: X." at its end. Panels come
in a user's order: data, the command's own options and model, training, predicting, output. Nothing here
imports torch.
"""

from __future__ import annotations

import shutil
import textwrap
from enum import Enum
from typing import Any

from torchtools.core.options import CONFIG_PANEL, DATA_PANEL, OUTPUT, PREDICTING, TRAINING

OTHER_PANEL = "Options"
# Panels not named here (a command's "Model", conv-demo's formula) come with the command's own options.
_PANEL_RANK = {DATA_PANEL: 0, TRAINING: 2, PREDICTING: 3, OUTPUT: 4, CONFIG_PANEL: 5}
FLAGS_COLUMN = 16  # the help column starts after this
_INDENT = 2
WIDTH_MAX = 100  # beyond this, lines of help are too long to read


def width() -> int:
    return min(shutil.get_terminal_size().columns, WIDTH_MAX)


def render(command: Any, ctx: Any) -> str:
    columns = width()
    lines = [f"Usage: {_usage(command, ctx)}", ""]
    for paragraph in _paragraphs(command.help or ""):
        lines += textwrap.wrap(paragraph, columns) + [""]
    arguments = [param for param in command.get_params(ctx) if param.param_type_name == "argument"]
    if arguments:
        lines.append("Arguments:")
        for argument in arguments:
            lines += _entry(argument.metavar, _help(argument), columns)
        lines.append("")
    panels: dict[str, list[Any]] = {}
    options = [param for param in command.get_params(ctx) if param.param_type_name == "option"]
    help_options = [option for option in options if option.name == "help"]
    # --data leads its panel, --help ends the last one; otherwise the order the config declares.
    for option in sorted(options, key=lambda option: option.name != "data"):
        if option not in help_options:
            panels.setdefault(getattr(option, "rich_help_panel", None) or OTHER_PANEL, []).append(option)
    order = sorted(panels, key=lambda name: _PANEL_RANK.get(name, 1))
    for panel in order:
        lines.append(f"{panel}:")
        for option in panels[panel] + (help_options if panel == order[-1] else []):
            lines += _entry(_flags(option), _help(option), columns)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_group(group: Any, ctx: Any) -> str:
    """`torchtools --help`: each command with the first paragraph of its description, then the options."""
    columns = width()
    lines = [f"Usage: {ctx.command_path} [OPTIONS] COMMAND [ARGS]...", ""]
    for paragraph in _paragraphs(group.help or ""):
        lines += textwrap.wrap(paragraph, columns) + [""]
    lines.append("Commands:")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            lines += _entry(name, next(iter(_paragraphs(command.help or "")), ""), columns)
    lines += ["", "Options:"]
    for param in group.get_params(ctx):
        if _is_option(param):
            lines += _entry(_flags(param), _help(param), columns)
    return "\n".join(lines).rstrip() + "\n"


def _usage(command: Any, ctx: Any) -> str:
    words = [ctx.command_path, "[OPTIONS]"]
    for param in command.get_params(ctx):
        if param.param_type_name == "argument":
            words.append(param.metavar if _required(param) else f"[{param.metavar}]")
    return " ".join(words)


def _paragraphs(text: str) -> list[str]:
    """The docstring's paragraphs, each as one line: its line breaks are the source's, not the terminal's."""
    return [" ".join(paragraph.split()) for paragraph in textwrap.dedent(text).split("\n\n") if paragraph.strip()]


def _flags(option: Any) -> str:
    """The spellings and the metavar core/command.py gave (empty for a switch)."""
    names = ", ".join([*option.opts, *option.secondary_opts])
    return f"{names} {option.metavar}" if option.metavar else names


def _required(param: Any) -> bool:
    """An option click requires, or a positional argument: each names the file a command works on, given on
    the command line or in --config (core/command.py leaves it to Config.build)."""
    return param.required or param.param_type_name == "argument"


def _help(param: Any) -> str:
    """The help text, then what it does not say: Required., Default: X., Environment: $X."""
    text = (getattr(param, "help", None) or "").strip()
    parts = [text] if text else []
    if _required(param):
        parts.append("Required.")
    default = _default(param)
    if default is not None and "Default:" not in text:
        parts.append(f"Default: {default}.")
    if _is_option(param) and param.envvar and not isinstance(param.envvar, (list, tuple)):
        parts.append(f"Environment: ${param.envvar}.")
    return " ".join(parts)


def _default(param: Any) -> str | None:
    """The default as a user types it, or None where none is shown (a bare switch is off by default)."""
    if not getattr(param, "show_default", True) or param.default is None or param.required:
        return None
    value = param.default
    if _is_option(param) and param.is_flag:
        if not param.secondary_opts:
            return None
        return param.opts[0] if value else param.secondary_opts[0]
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(item) for item in value) or None
    return _plain(value)


def _is_option(param: Any) -> bool:
    """Typer's params are its own copy of click's classes: told apart by their kind's name, not isinstance."""
    return param.param_type_name == "option"


def _plain(value) -> str:
    return str(value.value if isinstance(value, Enum) else value)


def _entry(flags: str, text: str, columns: int) -> list[str]:
    """One option: the flags, then its help from the help column (or two spaces after longer flags), its
    further lines in the help column: the help gets all but FLAGS_COLUMN + 4 of the width."""
    indent = " " * (_INDENT + FLAGS_COLUMN + 2)
    head = (" " * _INDENT + flags + "  ").ljust(len(indent))
    if len(head) > columns // 2:  # flags as long as the help: the help starts below them
        return [head.rstrip(), *textwrap.wrap(text, columns, initial_indent=indent, subsequent_indent=indent,
                                              break_on_hyphens=False)]
    return textwrap.wrap(text, columns, initial_indent=head, subsequent_indent=indent,
                         break_on_hyphens=False) or [head.rstrip()]
