"""Every command's options and their defaults, as generated from the configs, against the list kept here.

tests/help_options.json was written from the commands' hand-typed Typer signatures before the options were
generated from the config declarations: an option renamed, dropped or defaulted differently fails here.
"""

import json
from pathlib import Path

import typer

from torchtools.cli import app

KEPT = json.loads((Path(__file__).parent / "help_options.json").read_text())


def _options(command) -> dict[tuple[str, ...], str | None]:
    rows = {}
    for parameter in command.params:
        default = parameter.default
        default = default.value if hasattr(default, "value") else default
        default = list(default) if isinstance(default, (list, tuple)) else default
        rows[tuple(sorted(parameter.opts) + sorted(getattr(parameter, "secondary_opts", [])))] = (
            None if default is None else str(default))
    return rows


def test_every_command_keeps_its_options_and_defaults():
    commands = typer.main.get_command(app).commands
    assert set(commands) >= set(KEPT)
    for name, kept in KEPT.items():
        assert _options(commands[name]) == {tuple(row["opts"]): row["default"] for row in kept}, name


def test_help_shows_words_not_python_types(cli):
    """A switch shows no `<bool>` placeholder and a repeatable option names what it takes, not `<list[str]>`."""
    for name in KEPT:
        lines = [line for line in cli(name, "--help").stdout.splitlines() if "--help" not in line]
        assert not [line for line in lines if "<bool>" in line or "<list[" in line], name
