"""names-rnn: both data layouts, folding, padding equivalence, reports, predict after reload, errors."""

from __future__ import annotations


import pytest
import torch

from conftest import assert_refused_before_training, assert_user_error, run_torchtools
from datafiles import ENDINGS, NAMES_SMALL, names_rows, write_names_csv, write_names_folder
from torchtools.data.names import Vocabulary, fold
from torchtools.models.names import NameClassifier

# Three labels a tiny model tells apart in a couple of epochs: the ending gives the label away.


def test_course_csv_layout_trains_reports_and_predicts(cli, tmp_path):
    # The course's files where the command looks by default: data/names/ in the working folder.
    (tmp_path / "data" / "names").mkdir(parents=True)
    write_names_csv(tmp_path / "data" / "names" / "names_train.csv.gz", names_rows(0), gzipped=True)
    write_names_csv(tmp_path / "data" / "names" / "names_test.csv.gz", names_rows(1, per_label=20), gzipped=True)
    run = cli("names-rnn", "--epochs", "3", *NAMES_SMALL, "--predict", "Tanakamoto",
              "--predict", "Ivanov", "--plot", tmp_path / "confusion.png", "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["epochs"] == 3
    assert summary["labels"] == sorted(ENDINGS)
    assert summary["metrics"]["test_accuracy"] > 0.9
    assert set(summary["per_class_accuracy"]) == set(ENDINGS)
    assert sum(map(sum, summary["confusion_matrix"])) == 60
    assert [p["name"] for p in summary["predictions"]] == ["Tanakamoto", "Ivanov"]
    assert [p["top"][0][0] for p in summary["predictions"]] == ["Japanese", "Russian"]
    assert all(len(p["top"]) == 3 and sum(prob for _, prob in p["top"]) <= 1.0 + 1e-6 for p in summary["predictions"])
    assert "per-class accuracy (test)" in run.stderr and "confusion matrix (test" in run.stderr
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tutorial_folder_layout_counts_blank_and_junk_lines(cli, tmp_path):
    folder = write_names_folder(tmp_path / "by-language", names_rows(0))
    with open(folder / "Russian.txt", "a", encoding="utf-8") as file:
        file.write("\n   \nTo The First Page\n1234\n")
    run = cli("names-rnn", "--data", folder, "--epochs", "2", *NAMES_SMALL, "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["skipped"] == {"blank": 2, "junk": 2, "unknown_label": 0}
    assert "val_accuracy" in summary["metrics"]  # no --test: a stratified hold-out
    assert sum(map(sum, summary["confusion_matrix"])) == 36  # 20% of 60 names of each of 3 labels


def test_a_batch_gives_each_name_the_result_it_gets_alone():
    names = ["Li", "Nakamura", "Abe", "Schwarzenegger", "O'Neil", "Ng"]
    vocabulary = Vocabulary.from_names(names)
    codes = vocabulary.encode(names)
    for cell in ("gru", "lstm", "rnn"):
        torch.manual_seed(0)
        model = NameClassifier(len(vocabulary), 4, hidden=8, layers=2, cell=cell).eval()
        with torch.no_grad():
            together = model(codes)
            alone = torch.cat([model(vocabulary.encode([name])) for name in names])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_the_cpu_gru_trains_exactly_like_nn_gru_on_packed_sequences(bidirectional):
    """The hand-written GRU recurrence must give nn.GRU's outputs and gradients, padding included."""
    names = ["Li", "Nakamura", "Abe", "Schwarzenegger", "O'Neil", "Ng", "Abe"]
    vocabulary = Vocabulary.from_names(names)
    codes, targets = vocabulary.encode(names), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    torch.manual_seed(0)
    weights = NameClassifier(len(vocabulary), 4, hidden=8, layers=3, bidirectional=bidirectional).state_dict()
    results = []
    for fast in (True, False):  # False: nn.GRU over pack_padded_sequence, PyTorch's own way
        model = NameClassifier(len(vocabulary), 4, hidden=8, layers=3, bidirectional=bidirectional,
                               fast_cpu_gru=fast).double()
        model.load_state_dict(weights)
        logits = model(codes)
        torch.nn.functional.cross_entropy(logits, targets).backward()
        results.append((logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
    (own_logits, own_grads), (packed_logits, packed_grads) = results
    torch.testing.assert_close(own_logits, packed_logits)
    assert own_grads.keys() == packed_grads.keys()
    for name in own_grads:
        torch.testing.assert_close(own_grads[name], packed_grads[name], msg=name)


def test_unicode_names_fold_to_ascii():
    assert fold("Émile") == "Emile"
    assert fold("Dvořák") == "Dvorak"
    assert fold("  Bélanger\n") == "Belanger"
    assert fold("Ślusarczyk") == "Slusarczyk"
    assert fold("Иванов") == ""  # nothing of it is Latin: a junk line


def test_predict_after_reload_matches_training_run(cli, tmp_path):
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    trained = cli("names-rnn", "--data", train, "--epochs", "2", *NAMES_SMALL, "--save", tmp_path / "names.pt",
                  "--predict", "Sánchez", "--json")
    assert trained.exit_code == 0, trained.stderr
    reloaded = run_torchtools("names-rnn", "--checkpoint", tmp_path / "names.pt", "--predict", "Sánchez", "--json",
                              cwd=tmp_path)
    assert reloaded.exit_code == 0, reloaded.stderr
    before, after = trained.summary["predictions"][0], reloaded.summary["predictions"][0]
    assert [label for label, _ in after["top"]] == [label for label, _ in before["top"]]
    assert after["top"][0][1] == pytest.approx(before["top"][0][1], abs=1e-5)
    assert after["top"][0][0] == "Spanish"


def test_a_label_seen_only_in_the_test_set_is_reported(cli, tmp_path):
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    test = write_names_csv(tmp_path / "test.csv", names_rows(1, per_label=5) + [("Zorg", "Martian")], gzipped=False)
    run = cli("names-rnn", "--data", train, "--test", test, "--epochs", "1", *NAMES_SMALL, "--json")
    assert run.exit_code == 0, run.stderr
    assert "Martian" in run.stderr
    assert run.summary["skipped"]["unknown_label"] == 1
    assert sum(map(sum, run.summary["confusion_matrix"])) == 15


def test_a_malformed_csv_row_names_its_line(cli, tmp_path):
    rows = "".join(f"{name},{label}\n" for name, label in names_rows(0)[:3])
    (tmp_path / "bad.csv").write_text(rows + "Smith,English,extra\n")
    assert_user_error(cli("names-rnn", "--data", tmp_path / "bad.csv", *NAMES_SMALL), "bad.csv", "line 4")


def test_an_empty_folder_is_a_user_error(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(cli("names-rnn", "--data", tmp_path / "empty", *NAMES_SMALL), "no names_train.csv.gz",
                      "<Label>.txt", "empty")


@pytest.mark.slow
def test_course_split_reaches_80_percent_in_5_epochs(cli, shared_data):
    names = shared_data / "names"
    run = cli("names-rnn", "--data", names / "names_train.csv.gz", "--test", names / "names_test.csv.gz",
              "--epochs", "5", "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["metrics"]["test_accuracy"] >= 0.80


def test_predict_names_are_checked_before_training(cli, tmp_path):
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    run = cli("names-rnn", "--data", train, "--epochs", "1", *NAMES_SMALL[:-1], "--predict", "Ivanov",
              "--predict", "😀😀", "--save", tmp_path / "names.pt")
    assert_refused_before_training(run, tmp_path, "--predict", "😀😀", "no letters", created=(tmp_path / "names.pt",))


def test_plot_must_be_a_png(cli, tmp_path):
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    run = cli("names-rnn", "--data", train, *NAMES_SMALL[:-1], "--plot", "out.txt")
    assert_refused_before_training(run, tmp_path, "--plot out.txt", ".png", created=(tmp_path / "out.txt",))


def test_resume_refuses_changed_model_and_optimizer_naming_both_values(cli, tmp_path):
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    checkpoint = tmp_path / "names.pt"
    assert cli("names-rnn", "--data", train, "--epochs", "1", *NAMES_SMALL, "--optimizer", "sgd", "--momentum", "0.9",
               "--save", checkpoint).exit_code == 0
    resumed = ("names-rnn", "--data", train, "--epochs", "2", "--resume", checkpoint)
    assert_refused_before_training(cli(*resumed, "--hidden", "50"), tmp_path, "--hidden 50", "--hidden 16")
    assert_refused_before_training(cli(*resumed, "--optimizer", "adam"), tmp_path, "--optimizer adam",
                                   "--optimizer sgd")
    assert_refused_before_training(cli(*resumed, "--lr", "1e6"), tmp_path, "--lr 1000000.0", "--lr 0.02")
    two_labels = write_names_csv(tmp_path / "two.csv", [row for row in names_rows(0) if row[1] != "Japanese"],
                                 gzipped=False)
    run = cli("names-rnn", "--data", two_labels, "--epochs", "2", "--resume", checkpoint)
    assert_refused_before_training(run, tmp_path, "the label list", "Russian,Spanish", "Japanese,Russian,Spanish")
    # A thousand labels are named by their first few, not one line of thousands of characters.
    many_labels = write_names_csv(tmp_path / "many.csv", [(f"{name}{index}", f"Label{index:04d}")
                                                          for index in range(1000) for name in ("Ann", "Bo")],
                                  gzipped=False)
    run = cli("names-rnn", "--data", many_labels, "--epochs", "2", "--resume", checkpoint)
    assert_refused_before_training(run, tmp_path, "the label list", "this data gives Label0000,Label0001,", " ...,")
    error_line = next(line for line in run.stderr.splitlines() if line.startswith("error:"))
    assert len(error_line) < 250 + len(str(checkpoint)), error_line  # the whole list: 10,000 characters
    resumed = cli(*resumed, "--no-tensorboard", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert "epoch 2/2" in resumed.stderr and resumed.summary["epochs"] == 2


def test_resume_of_another_commands_checkpoint_is_refused(cli, tmp_path):
    checkpoint = tmp_path / "linear.pt"
    assert cli("fit-linear", "--epochs", "5", "--save", checkpoint, "--no-tensorboard").exit_code == 0
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    run = cli("names-rnn", "--data", train, "--epochs", "2", "--resume", checkpoint)
    assert_refused_before_training(run, tmp_path, "torchtools fit-linear", "not `torchtools names-rnn`")


@pytest.mark.parametrize("rows, fragment", [
    ([(name, "Russian") for name, _ in names_rows(0)], "1 label(s) (Russian)"),
    ([("Ivanov", "Russian"), ("Garcia", "Spanish"), ("Tanaka", "Japanese")], "held-out split came out empty"),
])
def test_data_a_classifier_cannot_learn_or_be_scored_on_is_refused(cli, tmp_path, rows, fragment):
    train = write_names_csv(tmp_path / "train.csv", rows, gzipped=False)
    run = cli("names-rnn", "--data", train, *NAMES_SMALL[:-1], "--save", tmp_path / "names.pt")
    assert_refused_before_training(run, tmp_path, fragment, created=(tmp_path / "names.pt",))


def test_target_accuracy_stops_early(cli, tmp_path):
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    run = cli("names-rnn", "--data", train, "--epochs", "30", *NAMES_SMALL, "--target-accuracy", "0.6", "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["stopped_early"] == "target" and summary["epochs"] < 30
    assert summary["metrics"]["val_accuracy"] >= 0.6


def test_built_in_course_split_and_predict_file_to_csv(cli, tmp_path):
    names = tmp_path / "incoming.txt"
    names.write_text("Nakamoto\n\nGonzalez, Jr\n😀😀\nIvanov\n", encoding="utf-8")
    output = tmp_path / "labels.csv"
    run = cli("names-rnn", "--epochs", "1", "--hidden", "32", "--layers", "1", "--predict-file", names,
              "--output", output, "--top-k", "2", "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert "using the built-in course table (names_train.csv.gz" in run.stderr
    summary = run.summary
    assert len(summary["labels"]) == 18 and summary["metrics"]["test_accuracy"] > 0.4  # chance is 1/18
    assert summary["predicted_names"] == 3 and summary["unreadable_names"] == ["😀😀"]
    rows = output.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "name,label,probability,label_2,probability_2" and len(rows) == 4
    assert rows[2].startswith('"Gonzalez, Jr",')  # the csv module quotes the comma
    assert [row["name"] for row in summary["predictions"]] == ["Nakamoto", "Gonzalez, Jr", "Ivanov"]
    assert_user_error(cli("names-rnn", "--output", tmp_path / "x.csv", "--epochs", "1"), "--output", "--predict")
