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


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    from torchtools.core import output

    fake = Clock()
    monkeypatch.setattr(output.time, "perf_counter", fake)
    return fake


def epoch_under_way(clock, *, epochs=25, steps=469, done=200, step_seconds=0.1):
    """Epoch 2 of `epochs`, `done` of `steps` steps at `step_seconds` each after a slow first one."""
    from torchtools.core.output import EpochProgress

    progress = EpochProgress(epochs)
    progress.start_epoch(2, steps)
    clock.now += 5.0  # the first step carries the warm-up: not counted in the estimates
    for step in range(1, done + 1):
        progress.advance(step)
        clock.now += step_seconds
    progress.update(done, done * 64, {"loss": 0.10141, "acc": 0.96921})
    return progress


def test_the_progress_line_keeps_the_epoch_the_share_and_the_time_left_at_any_width(clock):
    progress = epoch_under_way(clock)
    for width in (40, 60, 80, 100, 200):
        line = progress.line(width).plain
        assert len(line) < width, (width, line)
        assert line.startswith("epoch 2/25 ") and " 43% 0:27 left" in line, (width, line)  # 269 steps x 0.1 s
        assert "…" not in line
    assert "loss 0.1014  acc 0.9692" in progress.line(80).plain  # the stats fit at 80 columns
    assert "elapsed" not in progress.line(80).plain  # dropped first ...
    assert "elapsed" in progress.line(200).plain  # ... shown where there is room


def test_a_long_run_says_its_horizon_after_the_first_steps(clock, capsys):
    epoch_under_way(clock, epochs=25, steps=469, done=30, step_seconds=0.2)
    err = capsys.readouterr().err
    # After 2 s of steps past the first (11 done): 24 epochs of 469 steps at 0.2 s, less the 11 done: 37.5 min.
    assert err.count("about 37 min more for 24 epochs (timed on the first 11 steps") == 1, err


def test_a_short_run_needs_no_horizon(clock, capsys):
    epoch_under_way(clock, epochs=2, steps=50, done=50, step_seconds=0.01)
    assert "about" not in capsys.readouterr().err


def test_epoch_summaries_break_between_fields_never_inside_one():
    from torchtools.core.output import fit_fields

    fields = ["epoch 1/10", "train_loss 0.3433", "train_accuracy 0.8985", "test_loss 0.1014",
              "test_accuracy 0.9686", "7,550 samples/s", "7.947s"]
    lines = fit_fields(fields, 80)
    assert all(len(line) <= 80 for line in lines) and len(lines) == 2
    assert [field for line in lines for field in line.strip().split("  ")] == fields
    assert fit_fields(fields, 200) == ["  ".join(fields)]


def test_the_command_list_fits_80_columns_with_each_description_whole(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = cli("--help").stdout
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text and "╭" not in text
    for name in COMMANDS:
        assert re.search(rf"^  {name} ", text, re.M), name
    assert "pooling, and the feature maps of a picture." in " ".join(text.split())  # no break from the source
