"""Cases found by an independent adversarial pass over the merged work (after issue 25): each fails before its fix."""

from __future__ import annotations


from tests.conftest import assert_user_error


def _anchor_bomb(levels: int) -> str:
    """epochs: a list whose YAML aliases nest nine-fold `levels` deep (9**levels items, a 1 KB file)."""
    text = "epochs: [&a0 [x, x, x, x, x, x, x, x, x]"
    for level in range(1, levels):
        text += f", &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]"
    return text + "]\n"


def test_config_anchor_bomb_is_one_short_error_line(cli, tmp_path):
    """A YAML file whose value is an alias bomb (9**21 strings by reference) was shown whole in the error:
    the run never finished, and a smaller one printed a megabyte-long `error:` line."""
    for levels, name in ((21, "bomb.yaml"), (5, "small.yaml")):
        (tmp_path / name).write_text(_anchor_bomb(levels))
        run = cli("mnist", "--config", name, "--print-config")
        assert_user_error(run, f"{name} (epochs, line 1)", "expected an integer")
        assert len(run.stderr.strip().splitlines()[-1]) < 200, run.stderr


def test_config_long_text_value_is_shown_shortened(cli, tmp_path):
    (tmp_path / "long.yaml").write_text(f"epochs: \"{'b' * 5000}\"\n")
    run = cli("mnist", "--config", "long.yaml", "--print-config")
    assert_user_error(run, "long.yaml (epochs, line 1)", "expected an integer")
    assert len(run.stderr.strip().splitlines()[-1]) < 200, run.stderr


def test_print_config_of_weights_none_replays(cli, tmp_path):
    """--print-config of a from-scratch transfer run printed `weights: null`; read back with --config, that
    run asked for --weights again instead of being the same run (README: the output gives the same run)."""
    from tests.datafiles import write_photo_folders

    write_photo_folders(tmp_path / "photos", train=3, val=2)
    first = cli("transfer", "--weights", "none", "--arch", "resnet18", "--data", "photos", "--print-config")
    assert first.exit_code == 0, first.stderr
    assert "\nweights: none\n" in first.stdout
    (tmp_path / "run.yaml").write_text(first.stdout)
    again = cli("transfer", "--config", "run.yaml", "--print-config")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout


def test_transfer_save_into_a_class_folder_is_refused(cli, tmp_path):
    """The merge left TransferConfig.data_reads as dead code after a return: transfer listed none of its
    pictures, so --save onto a photo (or into a class folder) was accepted again and overwrote it."""
    from tests.datafiles import write_photo_folders

    write_photo_folders(tmp_path / "photos", train=3, val=2)
    ants = tmp_path / "photos" / "train" / "ants"
    photo = sorted(ants.iterdir())[0]
    before = {path.name: path.read_bytes() for path in ants.iterdir()}
    for save in (photo, ants / "m.pt"):
        run = cli("transfer", "--weights", "none", "--arch", "resnet18", "--data", "photos", "--epochs", "1",
                  "--image-size", "32", "--save", save, "--no-tensorboard")
        assert_user_error(run, "--save", "reads")
        assert "epoch 1" not in run.stderr
    assert {path.name: path.read_bytes() for path in ants.iterdir()} == before


def test_report_markdown_shows_control_characters_escaped(cli, tmp_path):
    """A label with an escape sequence reached the report's .md tables raw: `cat worst_names.md` recoloured the
    terminal (the terminal lines already showed it escaped, by the one text rule the cells now follow)."""
    from tests.datafiles import names_rows, write_names_folder

    folder = write_names_folder(tmp_path / "names", names_rows(0, 20))
    (folder / "Russian.txt").rename(folder / "Ru\x1b[31mss\x07.txt")
    run = cli("names-rnn", "--data", "names", "--epochs", "1", "--report", "report", "--no-tensorboard")
    assert run.exit_code == 0, run.stderr
    tables = {path.name: path.read_text() for path in (tmp_path / "report").glob("*.md")}
    assert tables and "Ru\\x1b[31mss\\x07" in tables["worst_names.md"], tables
    for text in tables.values():
        assert "\x1b" not in text and "\x07" not in text


def test_resume_takes_the_same_hub_folder_however_it_is_spelt(cli, tmp_path):
    """--weights hub/ (or ./hub, or its absolute path) beside --resume of a run trained from --weights hub was
    refused as "differs": a folder was compared as a string, a file by what it is."""
    import pytest

    timm = pytest.importorskip("timm", reason="timm not installed")
    import torch
    from timm.models import save_for_hf

    from tests.datafiles import write_photo_folders

    write_photo_folders(tmp_path / "photos", train=3, val=2)
    torch.manual_seed(0)
    save_for_hf(timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=2), str(tmp_path / "hub"),
                safe_serialization=True)
    small = ("--image-size", "32", "--batch-size", "4", "--no-tensorboard", "--data", "photos")
    first = cli("transfer", "--weights", "hub", "--epochs", "1", "--save", "h.pt", *small)
    assert first.exit_code == 0, first.stderr
    for spelt in ("hub/", "./hub", tmp_path / "hub"):
        again = cli("transfer", "--resume", "h.pt", "--weights", spelt, "--epochs", "2", "--save", "h2.pt", *small)
        assert again.exit_code == 0, (spelt, again.stderr)
    (tmp_path / "other").mkdir()
    assert_user_error(cli("transfer", "--resume", "h.pt", "--weights", "other", "--epochs", "2", *small),
                      "--weights other differs")


def test_print_config_with_json_ends_in_one_json_object(cli, tmp_path):
    """--print-config --json printed YAML: the last stdout line, which --json promises is one JSON object, was
    `plot: null`. It is now the settings as one JSON line, which --config reads back to the same settings."""
    import json

    first = cli("fit-linear", "--epochs", "2", "--json", "--print-config")
    assert first.exit_code == 0, first.stderr
    printed = first.summary
    assert printed["epochs"] == 2 and printed["json"] is True
    (tmp_path / "run.json").write_text(first.stdout)
    again = cli("fit-linear", "--config", "run.json", "--print-config")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1]) == printed


def test_label_smoothing_of_one_is_refused(cli, tmp_path):
    """--label-smoothing 1 (the range said 0..1) made every target uniform: the run learned nothing and exited 0
    with 0% accuracy. The bound is now below 1, in the file as on the command line."""
    run = cli("mnist", "--label-smoothing", "1", "--epochs", "1", "--print-config")
    assert_user_error(run, "--label-smoothing 1.0: must be below 1")
    (tmp_path / "c.toml").write_text("label-smoothing = 1.0\n")
    assert_user_error(cli("mnist", "--config", "c.toml", "--print-config"), "c.toml (label-smoothing, line 1)",
                      "must be below 1")
    assert cli("mnist", "--label-smoothing", "0.9", "--epochs", "1", "--print-config").exit_code == 0


def test_a_file_that_is_no_pytorch_file_is_not_offered_trust_pickle(cli, tmp_path):
    """A JPEG, a .gz or a YAML file given as --weights or to inspect-weights said it "needs arbitrary unpickling
    ... Pass --trust-pickle" (advice to unpickle a picture), or "pop from empty list". It now says what it holds."""
    import gzip

    from tests.datafiles import write_photo_folders

    write_photo_folders(tmp_path / "photos", train=3, val=2)
    photo = sorted((tmp_path / "photos" / "train" / "ants").glob("*.jpg"))[0]
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"1,2,3\n"))
    (tmp_path / "c.yaml").write_text("epochs: 1\n")
    for path, kind in ((photo, "a JPEG picture"), (tmp_path / "t.csv.gz", "gzip-compressed data"),
                       (tmp_path / "c.yaml", "text")):
        for command in (("inspect-weights", path),
                        ("transfer", "--weights", path, "--arch", "resnet18", "--data", "photos", "--epochs", "1")):
            run = cli(*command)
            assert_user_error(run, "not a readable PyTorch file", kind)
            assert "trust-pickle" not in run.stderr and "epoch 1" not in run.stderr


def test_an_output_file_name_ending_in_a_slash_is_refused(cli, tmp_path):
    """--save newdir/ (a folder, by the slash) wrote a checkpoint FILE named newdir and newdir.best.pt: Path
    drops the slash. Every option naming a file to write now refuses it, typed or in a --config file."""
    from tests.datafiles import write_table

    write_table(tmp_path / "tab.csv")
    run = cli("diabetes", "--data", "tab.csv", "--epochs", "1", "--save", "newdir/", "--no-tensorboard")
    assert_user_error(run, "--save newdir/", "names a folder")
    (tmp_path / "c.yaml").write_text("save: other/\n")
    assert_user_error(cli("diabetes", "--data", "tab.csv", "--epochs", "1", "--config", "c.yaml"),
                      "c.yaml (save, line 1)", "names a folder")
    assert_user_error(cli("fit-logistic", "--epochs", "1", "--plot", "curve.png/"), "--plot curve.png/")
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "other").exists()
    assert not (tmp_path / "newdir.best.pt").exists() and not list(tmp_path.glob("curve*"))
