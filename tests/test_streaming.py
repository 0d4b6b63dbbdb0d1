"""StreamedImages: the same batches as the in-memory TensorBatches, unreadable files skipped and named,
torchrun shares, peek; and the --loader auto budget."""

import os
from functools import partial

import numpy as np
import pytest
import torch

from image_files import labelled_folder, messy_folder
from torchtools.core.errors import UserError
from torchtools.data import budget
from torchtools.data.transforms import centre_square
from torchtools.data.images import read_picture
from torchtools.data.loaders import TensorBatches
from torchtools.data.streaming import StreamedImages

SIZE = 16
PREPARE = partial(centre_square, size=SIZE)  # picklable, so spawned workers could take it too
CPU = torch.device("cpu")


def in_memory(paths, labels, **options) -> TensorBatches:
    """What --loader memory builds from the same files: every image decoded and prepared up front."""
    images = np.stack([PREPARE(read_picture(path)) for path in paths])
    return TensorBatches(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels), **options)


def epochs(batches, count: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    return [list(batches) for _ in range(count)]


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_in_memory_ones_epoch_by_epoch(tmp_path, workers):
    paths, labels = labelled_folder(tmp_path, 11)
    options = dict(batch_size=4, shuffle=True, seed=7, transform=lambda batch: batch.float() / 255)
    expected = epochs(in_memory(paths, labels, **options), 2)
    streamed = StreamedImages(paths, labels, PREPARE, grayscale=False, device=CPU, workers=workers, **options)
    assert len(streamed) == 3
    got = epochs(streamed, 2)
    assert [len(epoch) for epoch in got] == [3, 3]
    for got_epoch, expected_epoch in zip(got, expected):
        for (images, targets), (expected_images, expected_targets) in zip(got_epoch, expected_epoch):
            assert images.dtype == torch.float32 and images.shape[1:] == (3, SIZE, SIZE)
            assert torch.equal(targets, expected_targets) and torch.equal(images, expected_images)
    assert got[0][0][1].tolist() != got[1][0][1].tolist()  # a new order each epoch
    assert streamed.skipped == []


def test_set_epoch_replays_an_epochs_order(tmp_path):
    paths, labels = labelled_folder(tmp_path, 9)
    streamed = StreamedImages(paths, labels, PREPARE, grayscale=False, batch_size=9, shuffle=True, device=CPU,
                              workers=0)
    first, second = (next(iter(streamed))[1].tolist() for _ in range(2))
    streamed.set_epoch(1)
    assert next(iter(streamed))[1].tolist() == second != first


def test_unreadable_files_are_skipped_and_named_once(tmp_path):
    readable, unreadable = messy_folder(tmp_path)
    paths = sorted(readable + unreadable)
    streamed = StreamedImages(paths, list(range(len(paths))), PREPARE, grayscale=False, batch_size=3, device=CPU,
                              workers=2)
    for _ in range(2):
        seen = [label for _, targets in streamed for label in targets.tolist()]
        assert sorted(paths[label] for label in seen) == readable  # every readable image, once an epoch
    assert sorted(streamed.skipped) == unreadable  # named once, however many epochs met them
    # Training: a batch that unreadable files leave with one image is dropped (BatchNorm needs two).
    training = StreamedImages(paths, list(range(len(paths))), PREPARE, grayscale=False, batch_size=3, shuffle=True,
                              device=CPU, workers=0)
    batches = [targets.tolist() for _, targets in training]
    assert all(len(batch) >= 2 for batch in batches)
    seen = [label for batch in batches for label in batch]
    assert len(seen) == len(set(seen)) and {paths[label] for label in seen} <= set(readable)


def test_grey_rgba_and_16_bit_pngs_arrive_as_8_bit_images(tmp_path):
    readable, _ = messy_folder(tmp_path)
    for grayscale, channels in ((False, 3), (True, 1)):
        streamed = StreamedImages(readable, [0] * len(readable), PREPARE, grayscale=grayscale, batch_size=len(readable),
                                  device=CPU, workers=0)
        images, _ = next(iter(streamed))
        assert images.dtype == torch.uint8 and images.shape == (len(readable), channels, SIZE, SIZE)
    sixteen_bit = next(path for path in readable if path.name == "sixteen-bit.png")
    assert set(np.unique(read_picture(sixteen_bit))) <= {156, 157}  # the high byte: not clipped, not the low byte


@pytest.mark.parametrize("every_sample", [False, True])
def test_torchrun_shares_are_disjoint_and_cover_the_order(tmp_path, every_sample):
    paths, labels = labelled_folder(tmp_path, 11)
    shares = []
    for rank in range(3):
        streamed = StreamedImages(paths, labels, PREPARE, grayscale=False, batch_size=2, shuffle=True, seed=3,
                                  device=CPU, workers=0).shard(rank, 3, every_sample=every_sample)
        shares.append([label for _, targets in streamed for label in targets.tolist()])
    seen = [label for share in shares for label in share]
    assert len(seen) == len(set(seen))
    if every_sample:  # evaluation: every image once
        assert sorted(seen) == labels
    else:  # training: equal shares, the remainder sits this epoch out
        assert [len(share) for share in shares] == [3, 3, 3]


def test_peek_gives_the_first_readable_images_for_a_grid(tmp_path):
    readable, unreadable = messy_folder(tmp_path)
    paths = sorted(readable + unreadable)
    streamed = StreamedImages(paths, [0] * len(paths), PREPARE, grayscale=False, batch_size=4, device=CPU, workers=0)
    grid = streamed.peek(len(readable))
    assert grid.shape == (len(readable), 3, SIZE, SIZE) and grid.dtype == torch.uint8
    assert sorted(streamed.skipped) == unreadable


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_arrive_on_the_device(tmp_path):
    paths, labels = labelled_folder(tmp_path, 6)
    device = torch.device("cuda")
    streamed = StreamedImages(paths, labels, PREPARE, grayscale=False, batch_size=4, device=device, workers=2)
    expected = in_memory(paths, labels, batch_size=4)
    for (images, targets), (expected_images, expected_targets) in zip(streamed, expected):
        assert images.device.type == targets.device.type == "cuda"
        assert torch.equal(images.cpu(), expected_images) and torch.equal(targets.cpu(), expected_targets)


def test_auto_loader_keeps_a_folder_in_memory_only_within_the_budget(monkeypatch):
    monkeypatch.setenv(budget.BUDGET_VARIABLE, "200M")
    loader, reason = budget.choose_loader("auto", 1000, 3, 256)
    assert loader == "memory"
    assert reason == ("memory: 1,000 images x 3x256x256 = 188 MiB, within the 200 MiB budget "
                      "(TORCHTOOLS_MEMORY_BUDGET=200M)")
    loader, reason = budget.choose_loader("auto", 8000, 3, 256)
    assert loader == "stream" and "8,000 images" in reason and "over the 200 MiB budget" in reason
    assert budget.choose_loader("memory", 8000, 3, 256)[0] == "memory"


def test_default_budget_is_a_quarter_of_memory_at_most_8_gib(monkeypatch):
    monkeypatch.delenv(budget.BUDGET_VARIABLE, raising=False)
    total = budget.total_memory()
    assert total and total > 0
    size, source = budget.memory_budget()
    assert size == min(total // 4, 8 * 1024 ** 3) and "a quarter of" in source


@pytest.mark.parametrize("text, size", [("2G", 2 * 1024 ** 3), ("500m", 500 * 1024 ** 2),
                                        ("1.5GiB", 3 * 1024 ** 3 // 2), ("123456", 123456)])
def test_budget_sizes_read_with_suffixes(text, size):
    assert budget.parse_bytes(text) == size


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "2X"])
def test_a_bad_budget_names_the_variable(monkeypatch, text):
    monkeypatch.setenv(budget.BUDGET_VARIABLE, text)
    with pytest.raises(UserError, match="TORCHTOOLS_MEMORY_BUDGET"):
        budget.choose_loader("auto", 10, 3, 32)


def prepare_noting_the_worker(image, folder):
    """PREPARE, leaving a file named after the process that ran it (picklable, for the workers)."""
    (folder / str(os.getpid())).touch()
    return PREPARE(image)


def test_the_decoding_workers_persist_from_epoch_to_epoch(tmp_path):
    paths, labels = labelled_folder(tmp_path / "images", 12)
    (tmp_path / "pids").mkdir()
    streamed = StreamedImages(paths, labels, partial(prepare_noting_the_worker, folder=tmp_path / "pids"),
                              grayscale=False, batch_size=3, shuffle=True, seed=1, device=CPU, workers=2)
    orders = [[label for _, targets in streamed for label in targets.tolist()] for _ in range(3)]
    assert all(sorted(order) == labels for order in orders) and orders[0] != orders[1]  # reshuffled each epoch
    workers = {path.name for path in (tmp_path / "pids").iterdir()}
    assert len(workers) == 2 and str(os.getpid()) not in workers  # the same two processes for all three epochs
    next(iter(streamed))  # an epoch left after one batch: the next one still starts cleanly
    assert sorted(label for _, targets in streamed for label in targets.tolist()) == labels
    streamed.close()
    assert len(list(streamed)) == 4 and len({path.name for path in (tmp_path / "pids").iterdir()}) == 4


def test_auto_loader_budgets_against_the_gpu_the_set_goes_to(monkeypatch):
    monkeypatch.delenv(budget.BUDGET_VARIABLE, raising=False)
    monkeypatch.setattr(budget, "total_memory", lambda: 64 * 1024 ** 3)  # 8 GiB host budget
    free = {"bytes": 4 * 1024 ** 3}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 8 * 1024 ** 3))
    gpu = torch.device("cuda", 0)
    # 8,000 photos at 256 px: 1.5 GiB decoded; fine in host memory, over a quarter of the GPU's 4 GiB free.
    assert budget.choose_loader("auto", 8000, 3, 256)[0] == "memory"
    loader, reason = budget.choose_loader("auto", 8000, 3, 256, device=gpu)
    assert loader == "stream" and "over the 1.0 GiB budget (a quarter of cuda:0's 4.0 GiB free memory" in reason
    free["bytes"] = 40 * 1024 ** 3  # a quarter is 10 GiB: the host budget (8 GiB) is the smaller
    assert budget.choose_loader("auto", 8000, 3, 256, device=gpu)[0] == "memory"
    assert "a quarter of 64 GiB memory" in budget.choose_loader("auto", 8000, 3, 256, device=gpu)[1]
    monkeypatch.setenv(budget.BUDGET_VARIABLE, "100G")  # the user's figure, for whichever device holds the set
    free["bytes"] = 1024 ** 3
    assert budget.choose_loader("auto", 8000, 3, 256, device=gpu)[0] == "memory"
