"""An 80-column terminal: every command's --help and the training progress line, as a newcomer sees them."""

from __future__ import annotations

import re

import pytest
import typer

from torchtools.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)
# `transfer --help` at 80 columns was 294 lines in Typer's panels (issue 29): at most half of that now.
TRANSFER_HELP_LINES_BEFORE = 294
# A user's order: where the data is, what model, how it trains, what it predicts and writes.
PANEL_ORDER = ["Data", "Training", "Predicting", "Output and checkpoints"]


@pytest.fixture
def help_at_80(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")

    def render(name: str) -> str:
        run = cli(name, "--help")
        assert run.exit_code == 0, run.stderr
        return run.stdout

    return render


def entries(text: str) -> dict[str, str]:
    """--flag -> its help text, joined across its wrapped lines."""
    found, flag = {}, None
    for line in text.splitlines():
        match = re.match(r"  (-[-\w]+)", line)
        if match:
            flag = match.group(1)
            found[flag] = line
        elif flag and line.startswith("    "):
            found[flag] += " " + line.strip()
        else:
            flag = None
    return {flag: " ".join(entry.split()) for flag, entry in found.items()}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_fits_80_columns_uncut_with_most_of_the_width_for_the_text(help_at_80, name):
    text = help_at_80(name)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    assert "…" not in text and "╭" not in text  # nothing cut, no boxes eating columns
    help_columns = [len(line) - len(line.lstrip()) for line in lines if line.startswith("    ")]
    assert help_columns and max(help_columns) <= 24  # the text starts by column 24: 56 or more for it


@pytest.mark.parametrize("name", COMMANDS)
def test_help_panels_come_in_a_users_order_and_defaults_are_said_one_way(help_at_80, name):
    text = help_at_80(name)
    panels = [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    known = [panel for panel in panels if panel in PANEL_ORDER]
    assert known == sorted(known, key=PANEL_ORDER.index), panels
    assert "[default:" not in text and "[env var:" not in text  # one style: "Default: X."
    for flag, entry in entries(text).items():
        assert entry.count("Default:") <= 1, entry


def test_data_comes_before_the_rest(help_at_80):
    for name in ("mnist", "cifar", "transfer", "diabetes", "names-rnn"):
        flags = list(entries(help_at_80(name)))
        assert flags[0] == "--data", (name, flags[:5])
        for later in ("--predict", "--model", "--epochs", "--save"):
            if later in flags:
                assert flags.index(later) > flags.index("--data"), name


def test_transfer_help_is_half_its_old_length_and_says_what_is_required(help_at_80):
    text = help_at_80("transfer")
    assert len(text.splitlines()) <= TRANSFER_HELP_LINES_BEFORE // 2
    weights = entries(text)["--weights"]
    assert "Required to train" in weights
    assert entries(text)["--epochs"].endswith("Default: 25.")
    assert "Default: --amp." in entries(text)["--amp"]  # a switch's default is the spelling that is on


def test_export_shows_its_checkpoint_as_required(help_at_80, cli):
    text = help_at_80("export")
    assert "Usage: torchtools export [OPTIONS] CHECKPOINT" in " ".join(text.split())
    assert "[CHECKPOINT]" not in text
    run = cli("export")
    assert run.exit_code == 2 and "CHECKPOINT" in run.stderr and "Traceback" not in run.stderr


def test_long_choices_are_listed_in_the_text_not_cut(help_at_80):
    compile_mode = entries(help_at_80("mnist"))["--compile-mode"]
    assert compile_mode.startswith("--compile-mode CHOICE")
    assert "One of: default, reduce-overhead, max-autotune." in compile_mode
