"""What each kind of exported model takes, for `torchtools export`: its graph, torchtools' own forward on the
same inputs, the metadata that travels with it, and inputs to check it on (real where at hand, else generated).

Images (mnist, cifar, transfer): uint8 (N, C, size, size) pictures as ImageFormat.prepare stores them.
Names (names-rnn): int64 codes (N, T) from the saved vocabulary, right-padded with 0.
Table (diabetes): float32 raw feature rows (N, F).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from torchtools.core.errors import UserError
from torchtools.core.output import say
from torchtools.data import roots
from torchtools.data.image_inputs import expand_image_inputs, image_batches
from torchtools.data.names import NAME_CHARACTERS, Vocabulary, read_names
from torchtools.data.tables import read_numeric_csv
from torchtools.data.transforms import ImageFormat
from torchtools.data.vision import load_cifar, load_mnist
from torchtools.models.deployable import ImageGraph, NamesGraph, TableGraph


def spread(total: int, count: int) -> list[int]:
    """`count` indices spread evenly over `total` items (test sets are often sorted by label)."""
    return sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))


def top1(logits: Tensor) -> Tensor:
    """The predicted class of each row; a single logit is the binary P(y=1) > 0.5."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)


class Kind:
    dynamic: dict[int, str] = {0: "batch"}

    def __init__(self, saved: dict):
        self.saved = saved

    def data(self) -> Path | None:
        """Where the checkpoint's training data was (its "data"), while it is still there."""
        data = self.saved.get("data")
        return Path(data) if data is not None and Path(data).exists() else None

    @staticmethod
    def top1(logits: Tensor) -> Tensor:
        return top1(logits)

    def example(self, batch: Tensor) -> Tensor:
        """The batch the exporters trace with: two rows, so the batch dimension is not fixed at one (a copy: the
        exporters would track a view's base and its sizes too)."""
        return (batch[:2] if len(batch) >= 2 else batch.repeat(2, *([1] * (batch.ndim - 1)))).clone()


class Images(Kind):
    def __init__(self, saved: dict):
        super().__init__(saved)
        self.format = ImageFormat(**saved["image_format"])
        self.classes = list(saved["classes"])

    def describe(self) -> str:
        fmt = self.format
        return f"{len(self.classes)} classes, uint8 {self.channels}x{fmt.size}x{fmt.size} pictures in"

    @property
    def channels(self) -> int:
        return 1 if self.format.grayscale else 3

    def graph(self, network: nn.Module) -> nn.Module:
        return ImageGraph(network, self.format.mean, self.format.std, self.format.crop)

    def reference(self, network: nn.Module, batch: Tensor) -> Tensor:
        return network(self.format.eval_transform(torch.device("cpu"), channels_last=False)(batch))

    def metadata(self) -> dict:
        fmt = self.format
        preprocessing = {key: value for key, value in dataclasses.asdict(fmt).items() if key != "augment"}
        return {"classes": self.classes, "preprocessing": preprocessing,
                "input": {"name": "images", "dtype": "uint8", "shape": ["batch", self.channels, fmt.size, fmt.size],
                          "layout": "NCHW; " + ("grey" if fmt.grayscale else "RGB") + ", prepared as preprocessing "
                                    "says (fit, size); crop and normalisation are inside the graph"},
                "output": {"name": "logits", "shape": ["batch", len(self.classes)], "probabilities": "softmax"}}

    def inputs(self, items: list[str] | None, count: int, *, seed: int) -> tuple[Tensor, str]:
        if items:
            return self._pictures(items, count)
        found = self._dataset(count)
        if found is not None:
            images, source = found
            return images[spread(len(images), count)], source
        generator = torch.Generator().manual_seed(seed)
        shape = (count, self.channels, self.format.size, self.format.size)
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator), "generated pictures"

    def _pictures(self, items: list[str], count: int) -> tuple[Tensor, str]:
        paths = expand_image_inputs(items)
        chosen = [paths[index] for index in spread(len(paths), count)]
        batches = [batch for readable, batch, _ in image_batches(chosen, self.format.prepare,
                                                                 grayscale=self.format.grayscale,
                                                                 batch_size=len(chosen), workers=0) if readable]
        if not batches:
            raise UserError(f"--inputs: none of the {len(chosen)} picture(s) chosen can be read")
        return torch.cat(batches), f"pictures from {', '.join(items)}"

    def _dataset(self, count: int) -> tuple[Tensor, str] | None:
        """Real pictures from the data the checkpoint trained on (else the data root): the held-out images of
        an MNIST-style or CIFAR set, or the held-out folder (val/, test/) of an image-folder tree."""
        command, dataset = self.saved["command"], self.saved["config"].get("dataset")
        loaders = {"mnist": load_mnist, "cifar": load_cifar}
        if command not in loaders or dataset not in ("mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100"):
            return self._folder(command, count)
        try:
            images = loaders[command](dataset, self.data() or roots.default_root(), download=False)
        except UserError as error:
            say(f"no {dataset} test set at hand ({error}); using generated pictures")
            return None
        return images.test_images, f"{dataset} test images from {images.source}"

    def _folder(self, command: str, count: int) -> tuple[Tensor, str] | None:
        data = self.data()
        if data is None or not data.is_dir():
            return None
        folder = roots.transfer_folder(data) if command == "transfer" else data
        held_out = next((folder / name for name in ("val", "test") if (folder / name).is_dir()), folder)
        return self._pictures([str(held_out)], count)


class Names(Kind):
    dynamic = {0: "batch", 1: "time"}

    def __init__(self, saved: dict):
        super().__init__(saved)
        self.vocabulary = Vocabulary(saved["vocabulary"])
        self.labels = list(saved["labels"])

    def describe(self) -> str:
        return f"{len(self.labels)} labels, encoded names in ({len(self.vocabulary.characters)} characters)"

    def graph(self, network: nn.Module) -> nn.Module:
        return NamesGraph(network)

    def reference(self, network: nn.Module, batch: Tensor) -> Tensor:
        return network(batch)

    def example(self, batch: Tensor) -> Tensor:
        """Two names at their own padded length, so neither the batch nor the length is fixed by the example."""
        rows = super().example(batch)
        return rows[:, :max(2, int((rows != 0).sum(dim=1).max()))].clone()

    def metadata(self) -> dict:
        return {"classes": self.labels,
                "preprocessing": {"vocabulary": self.vocabulary.characters, "pad": self.vocabulary.PAD,
                                  "unknown": self.vocabulary.UNKNOWN, "first_character_index": 2,
                                  "fold": "Unicode NFD, combining marks dropped, only these characters kept: "
                                          + "".join(sorted(NAME_CHARACTERS))},
                "input": {"name": "codes", "dtype": "int64", "shape": ["batch", "time"],
                          "layout": "one row a name: vocabulary.index(char) + 2 (1 for an unknown character), "
                                    "right-padded with 0"},
                "output": {"name": "logits", "shape": ["batch", len(self.labels)], "probabilities": "softmax"}}

    def inputs(self, items: list[str] | None, count: int, *, seed: int) -> tuple[Tensor, str]:
        found = roots.names_files(Path(_one(items)) if items else self.data(), "--inputs")
        path = found.test or found.path if not items else found.path
        names = read_names(path).names
        chosen = [names[index] for index in spread(len(names), count)]
        return self.vocabulary.encode(chosen), f"names from {path}"


class Table(Kind):
    def __init__(self, saved: dict):
        super().__init__(saved)
        self.mean = torch.as_tensor(saved["mean"], dtype=torch.float32)
        self.std = torch.as_tensor(saved["std"], dtype=torch.float32)

    def describe(self) -> str:
        return f"{len(self.mean)} raw features in, one logit out"

    def graph(self, network: nn.Module) -> nn.Module:
        return TableGraph(network, self.mean, self.std)

    def reference(self, network: nn.Module, batch: Tensor) -> Tensor:
        return network((batch - self.mean) / self.std)

    def metadata(self) -> dict:
        return {"classes": None,
                "preprocessing": {"features": len(self.mean), "mean": self.mean.tolist(), "std": self.std.tolist(),
                                  "standardised": "inside the graph"},
                "input": {"name": "rows", "dtype": "float32", "shape": ["batch", len(self.mean)],
                          "layout": "the raw feature columns, in the training CSV's order"},
                "output": {"name": "logits", "shape": ["batch", 1], "probabilities": "sigmoid: P(y=1)"}}

    def inputs(self, items: list[str] | None, count: int, *, seed: int) -> tuple[Tensor, str]:
        found = roots.diabetes_table(Path(_one(items)) if items else self.data(), "--inputs")
        values = read_numeric_csv(found.path).values
        if values.shape[1] not in (len(self.mean), len(self.mean) + 1):
            raise UserError(f"{found.path} has {values.shape[1]} columns; the model takes {len(self.mean)} features "
                            "(plus an optional label column)")
        rows = torch.from_numpy(values[:, :len(self.mean)])
        return rows[spread(len(rows), count)], f"rows of {found.path}"


def _one(items: list[str]) -> str:
    if len(items) != 1:
        raise UserError(f"--inputs takes one file or folder for this model, not {len(items)}")
    return items[0]


KINDS = {"mnist": Images, "cifar": Images, "transfer": Images, "names-rnn": Names, "diabetes": Table}
