"""names-rnn against the course's own loop, epoch by epoch, in one process.

The course (lecture 13): a Dataset of (name, country) strings, a DataLoader of batches of 256, and per
batch `make_tensors` (ASCII codes, zero padding, sort by length) feeding an Embedding -> bidirectional GRU
-> Linear through pack_padded_sequence; Adam lr 1e-3. torchtools trains the same model size through its
engine on the same shuffled batches of 256, held as tensors. The loops alternate epoch by epoch so that a
busy machine slows them alike. A third contender runs the torchtools model through nn.GRU on packed
sequences instead of its own batched-direction GRU: the two correct ways of handling padding.

    .venv/bin/python benchmarks/names.py --data ../shared/data/names --epochs 5
"""

from __future__ import annotations

import argparse
import csv
import gzip
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader, Dataset

from torchtools.core import output
from torchtools.core.engine import Objective, evaluate, train_one_epoch
from torchtools.data.loaders import TensorBatches
from torchtools.data.names import Vocabulary, read_names
from torchtools.models.names import NameClassifier

HIDDEN, LAYERS, BATCH, CHARS = 100, 2, 256, 128


# --- the course's code, as in the lecture -------------------------------------------------------------------
class CourseNameDataset(Dataset):
    def __init__(self, filename: Path, countries: list[str] | None = None):
        with gzip.open(filename, "rt") as file:
            rows = list(csv.reader(file))
        self.names = [row[0] for row in rows]
        self.countries = [row[1] for row in rows]
        self.country_list = countries or sorted(set(self.countries))
        self.country_dict = {country: index for index, country in enumerate(self.country_list)}

    def __getitem__(self, index):
        return self.names[index], self.country_dict[self.countries[index]]

    def __len__(self):
        return len(self.names)


class CourseRNNClassifier(nn.Module):
    def __init__(self, input_size, hidden_size, output_size, n_layers=1, bidirectional=True):
        super().__init__()
        self.hidden_size, self.n_layers = hidden_size, n_layers
        self.n_directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, n_layers, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden_size * self.n_directions, output_size)

    def forward(self, input, seq_lengths):
        input = input.t()
        batch_size = input.size(1)
        hidden = torch.zeros(self.n_layers * self.n_directions, batch_size, self.hidden_size, device=input.device)
        embedding = self.embedding(input)
        gru_input = pack_padded_sequence(embedding, seq_lengths)
        output, hidden = self.gru(gru_input, hidden)
        hidden_cat = torch.cat([hidden[-1], hidden[-2]], dim=1) if self.n_directions == 2 else hidden[-1]
        return self.fc(hidden_cat)


def make_tensors(names, countries):
    sequences = [[ord(c) for c in name] for name in names]
    seq_lengths = torch.LongTensor([len(seq) for seq in sequences])
    seq_tensor = torch.zeros(len(sequences), int(seq_lengths.max())).long()
    for idx, (seq, seq_len) in enumerate(zip(sequences, seq_lengths)):
        seq_tensor[idx, :seq_len] = torch.LongTensor(seq)
    seq_lengths, perm_idx = seq_lengths.sort(dim=0, descending=True)
    return seq_tensor[perm_idx], seq_lengths, countries.long()[perm_idx]


class CourseLoop:
    """The lecture's loop; on a GPU the model and each batch's tensors are moved there (lengths stay on the
    CPU, as pack_padded_sequence wants)."""

    def __init__(self, data: Path, device: torch.device = torch.device("cpu")):
        self.device = torch.device(device)
        self.train = CourseNameDataset(data / "names_train.csv.gz")
        self.test = CourseNameDataset(data / "names_test.csv.gz", self.train.country_list)
        self.train_loader = DataLoader(self.train, batch_size=BATCH, shuffle=True)
        self.test_loader = DataLoader(self.test, batch_size=BATCH, shuffle=False)
        self.model = CourseRNNClassifier(CHARS, HIDDEN, len(self.train.country_list), LAYERS).to(self.device)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.001)

    def train_epoch(self) -> float:
        for names, countries in self.train_loader:
            inputs, seq_lengths, target = make_tensors(names, countries)
            inputs, target = inputs.to(self.device), target.to(self.device)
            loss = self.criterion(self.model(inputs, seq_lengths), target)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return loss.item()

    def test_accuracy(self) -> float:
        correct = 0
        with torch.no_grad():
            for names, countries in self.test_loader:
                inputs, seq_lengths, target = make_tensors(names, countries)
                predicted = self.model(inputs.to(self.device), seq_lengths).argmax(dim=1).cpu()
                correct += (predicted == target).sum().item()
        return correct / len(self.test)


# --- torchtools -----------------------------------------------------------------------------------------------
class TorchtoolsLoop:
    def __init__(self, data: Path, *, packed: bool, seed: int):
        train, test = read_names(data / "names_train.csv.gz"), read_names(data / "names_test.csv.gz")
        labels = sorted(set(train.labels))
        vocabulary = Vocabulary.from_names(train.names)
        self.train_batches = TensorBatches(*self._tensors(train, labels, vocabulary), batch_size=BATCH,
                                           shuffle=True, seed=seed)
        self.test_batches = TensorBatches(*self._tensors(test, labels, vocabulary), batch_size=BATCH)
        # packed: nn.GRU on packed sequences, the other correct way
        self.model = NameClassifier(len(vocabulary), len(labels), hidden=HIDDEN, layers=LAYERS,
                                    fast_cpu_gru=not packed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.device = torch.device("cpu")
        self.objective = Objective.classification()
        self.epoch = 0

    @staticmethod
    def _tensors(names, labels, vocabulary):
        return vocabulary.encode(names.names), torch.tensor([labels.index(label) for label in names.labels])

    def train_epoch(self) -> float:
        self.epoch += 1
        return train_one_epoch(self.model, self.objective, self.optimizer, self.train_batches, device=self.device,
                               epoch=self.epoch)["train_loss"]

    def test_accuracy(self) -> float:
        return evaluate(self.model, self.objective, self.test_batches, self.device).accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/names")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-packed", action="store_true", help="Skip the packed torchtools contender.")
    args = parser.parse_args()

    output.configure(quiet=True, json=False)  # the engine's progress lines would interleave with the table
    torch.manual_seed(args.seed)
    loops = {"course": CourseLoop(args.data), "torchtools": TorchtoolsLoop(args.data, packed=False, seed=args.seed)}
    if not args.no_packed:
        loops["torchtools-packed"] = TorchtoolsLoop(args.data, packed=True, seed=args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; epoch = one training pass (timed), "
          "then accuracy on names_test (timed apart)")
    seconds = {name: [] for name in loops}
    test_seconds = {name: [] for name in loops}
    accuracy = {name: 0.0 for name in loops}
    for epoch in range(1, args.epochs + 1):
        cells = []
        for name, loop in loops.items():
            started = time.perf_counter()
            loop.train_epoch()
            seconds[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            accuracy[name] = loop.test_accuracy()
            test_seconds[name].append(time.perf_counter() - started)
            cells.append(f"{name} {seconds[name][-1]:5.2f}s {accuracy[name]:.2%}")
        print(f"epoch {epoch}: " + "   ".join(cells), flush=True)
    # On a shared machine other work only ever adds time: the fastest epoch is the fairest figure.
    fastest = {name: min(times) for name, times in seconds.items()}
    median = {name: statistics.median(times) for name, times in seconds.items()}
    for name in loops:
        print(f"{name:18s} epoch fastest {fastest[name]:.2f}s median {median[name]:.2f}s  "
              f"test pass {min(test_seconds[name]):.2f}s  accuracy {accuracy[name]:.2%}  speed-up vs course "
              f"{fastest['course'] / fastest[name]:.2f}x (fastest) {median['course'] / median[name]:.2f}x (median)")


if __name__ == "__main__":
    main()
