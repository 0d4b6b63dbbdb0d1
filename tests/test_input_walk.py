"""The one input walk and the one picture reader: names of any bytes, symlink loops, FIFOs, the pixel limit,
a class with nothing readable, and tensor files whose shapes claim more than the file stores."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_user_error, run_torchtools
from datafiles import write_image, write_mnist, write_png_header, write_photo_folders
from image_files import picture, write
from torchtools.core.checkpoints import load_file
from torchtools.core.errors import UserError
from torchtools.data.folders import list_folders, read_folders
from torchtools.data.image_inputs import expand_image_inputs, image_batches
from torchtools.data.images import Unreadable, read_image, read_picture
from torchtools.data.transforms import ImageFormat, centre_square
from torchtools.models.pretrained import read_weights

POSIX = pytest.mark.skipif(os.name != "posix", reason="symlinks, FIFOs and byte file names are POSIX features")
BYTES_NAME = os.fsdecode(b"caf\xe9 \xff.png")  # not UTF-8: Linux keeps the bytes, Python a surrogate escape
SMALL = ("--weights", "none", "--arch", "resnet18", "--image-size", "32", "--batch-size", "4", "--epochs", "1",
         "--no-tensorboard", "--json", "--device", "cpu")
FORMAT = ImageFormat(16, (0.5,) * 3, (0.5,) * 3)


def prepare(image: np.ndarray) -> np.ndarray:
    return centre_square(image, 16)


@POSIX
@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_a_file_name_that_is_not_utf8_trains_predicts_and_is_written(tmp_path, loader):
    """Once a segfault (stream) and a UnicodeEncodeError (memory, --output); now a picture like any other."""
    root = write_photo_folders(tmp_path / "photos", train=4, val=2)
    odd = root / "train" / "bees" / BYTES_NAME
    write_image(tmp_path / "plain.png", 1, np.random.default_rng(3))
    odd.write_bytes((tmp_path / "plain.png").read_bytes())
    output = tmp_path / "labels.csv"
    run = run_torchtools("transfer", "--data", root, "--loader", loader, "--predict", root / "train" / "bees",
                         "--output", output, *SMALL, cwd=tmp_path, env={"TORCHTOOLS_CACHE": str(tmp_path / "cache")})
    assert run.exit_code == 0, run.stderr
    assert run.summary["train_images"] + run.summary["val_images"] == 4 * 2 + 2 * 2 + 1
    with output.open(newline="", encoding="utf-8") as file:
        paths = [row["path"] for row in csv.DictReader(file)]
    assert str(root / "train" / "bees" / "caf\\xe9 \\xff.png") in paths and len(paths) == 5


@POSIX
def test_symlink_loops_end_and_each_picture_comes_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    root = tmp_path / "pictures"
    pictures = [write(root / "a" / "one.png", picture(rng)), write(root / "a" / "b" / "two.png", picture(rng)),
                write(root / "three.jpg", picture(rng))]
    (root / "a" / "b" / "up").symlink_to(root / "a")  # loop one
    (root / "a" / "round").symlink_to(root)  # loop two
    (root / "alias.png").symlink_to(root / "three.jpg")  # a second name of the same picture
    monkeypatch.chdir(tmp_path)
    for items in (["pictures/**/*.png", "pictures/**/*.jpg"], [root], ["pictures/**"], [root / "a", root]):
        found = expand_image_inputs(items)
        assert sorted(path.resolve() for path in found) == sorted(path.resolve() for path in pictures), items
    classes = list_folders(root)
    assert len(classes[0]) == 3 and classes[4] == ["a"]  # three.jpg lies outside any class folder


@POSIX
def test_a_picture_linked_into_train_and_val_is_trained_on_only(tmp_path):
    """One walk over both folders: a hard link or symlink cannot put a training picture among the held-out ones."""
    root = write_photo_folders(tmp_path / "photos", train=3, val=2)
    os.link(root / "train" / "ants" / "0.jpg", root / "val" / "ants" / "linked.jpg")
    (root / "val" / "bees" / "symlinked.png").symlink_to(root / "train" / "bees" / "1.png")
    train_paths, _, held_paths, _, _, _ = list_folders(root)
    assert root / "train" / "ants" / "0.jpg" in train_paths and len(train_paths) == 2 * 3 + 1  # + broken.jpg
    assert sorted(path.name for path in held_paths) == ["0.jpg", "0.jpg", "1.png", "1.png"]  # no linked ones


@POSIX
def test_fifos_and_devices_are_skipped_and_named_never_waited_on(tmp_path):
    folder = tmp_path / "incoming"
    good = write(folder / "good.png", picture(np.random.default_rng(0)))
    fifo = folder / "pipe.jpg"
    os.mkfifo(fifo)
    found = expand_image_inputs([folder, "/dev/zero"])
    assert found == [good, fifo, Path("/dev/zero")]
    (readable, batch, unreadable), = image_batches(found, prepare, grayscale=False, batch_size=8, workers=0)
    assert readable == [good] and unreadable == [fifo, Path("/dev/zero")] and batch.shape == (1, 3, 16, 16)
    with pytest.raises(UserError, match="not a regular file"):
        read_image(fifo)


def test_the_pixel_limit_is_read_from_the_header_before_decoding(tmp_path):
    forged = write_png_header(tmp_path / "huge.png", 20000, 20000)  # 20000x20000 claimed in 200 bytes
    assert forged.stat().st_size < 1000
    with pytest.raises(Unreadable, match="20000x20000 = 400,000,000 pixels, over the limit of 100,000,000"):
        read_picture(forged)
    with pytest.raises(Unreadable, match="damaged"):  # within a raised limit it is decoded, and is no picture
        read_picture(forged, max_pixels=10**9)
    real = write(tmp_path / "real.png", np.zeros((1500, 2000, 3), np.uint8))  # a real 3 MP picture
    assert read_picture(real).shape == (1500, 2000, 3)
    with pytest.raises(Unreadable, match="over the limit of 1,000,000"):
        read_picture(real, max_pixels=10**6)


def test_predict_names_every_skipped_picture_and_the_limit_is_an_option_and_a_variable(cli, tmp_path, monkeypatch):
    data = write_mnist(tmp_path / "data", train=60, test=20)
    checkpoint = tmp_path / "m.pt"
    assert cli("mnist", "--data", data, "--model", "mlp", "--epochs", "1", "--save", checkpoint, "--no-tensorboard",
               "-q").exit_code == 0
    folder = tmp_path / "incoming"
    good = write(folder / "good.png", picture(np.random.default_rng(0)))  # 30x24: 720 pixels
    big = write_png_header(folder / "big.png", 20000, 20000)
    run = cli("mnist", "--checkpoint", checkpoint, "--predict", folder, "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["predicted_images"] == 1 and run.summary["unreadable_images"] == [str(big)]
    assert "skipped 1 unreadable picture(s)" in run.stderr and "big.png" in run.stderr
    assert_user_error(cli("mnist", "--checkpoint", checkpoint, "--predict", good, "--max-pixels", "700"),
                      "none of the 1 picture(s)", "good.png", "--max-pixels")
    monkeypatch.setenv("TORCHTOOLS_MAX_PIXELS", "700")
    assert_user_error(cli("mnist", "--checkpoint", checkpoint, "--predict", good), "none of the 1 picture(s)")
    assert cli("mnist", "--checkpoint", checkpoint, "--predict", good, "--max-pixels", "720").exit_code == 0
    assert_user_error(cli("mnist", "--checkpoint", checkpoint, "--predict", good, "--max-pixels", "0"),
                      "--max-pixels 0", "at least 1")


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_both_loaders_skip_and_name_a_picture_over_the_limit(tmp_path, loader):
    root = write_photo_folders(tmp_path / "photos", train=3, val=2)
    big = write(root / "train" / "bees" / "big.png", np.zeros((100, 120, 3), np.uint8))
    images = read_folders(root, prepare, key="t", loader=loader, max_pixels=100 * 100)
    assert big in images.skipped and len(images.train_labels) == 2 * 3


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_a_class_with_no_readable_training_picture_is_refused(tmp_path, loader):
    """Once: one usable class left, and val_accuracy 1.0 for a CI gate to pass."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for index in range(3):
        write_image(root / "ants" / f"{index}.png", 0, rng)
        (root / "bees" / f"{index}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (root / "bees" / f"{index}.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    with pytest.raises(UserError, match=r"class bees .* has no readable training picture \(3 unreadable: .*0\.jpg"):
        read_folders(root, prepare, key="t", loader=loader)


def test_the_command_refuses_it_with_one_error_line(cli, tmp_path):
    root = write_photo_folders(tmp_path / "photos", train=3, val=2)
    for path in (root / "train" / "bees").iterdir():
        path.write_bytes(b"")
    assert_user_error(cli("transfer", "--data", root, *SMALL), "class bees", "no readable training picture",
                      "remove the class")


def test_a_tensor_claiming_more_than_its_file_stores_is_refused(tmp_path):
    expanded = tmp_path / "expanded.pth"
    torch.save({"weight": torch.zeros(1).expand(2**32)}, expanded)  # 16 GB as floats, from one stored float
    assert expanded.stat().st_size < 2000
    with pytest.raises(UserError, match=r"weight of shape \[4294967296\] would take 17,179,869,184 bytes"):
        load_file(expanded)
    views = tmp_path / "views.pth"
    torch.save({"every_other": torch.arange(10.0)[::2], "tied": [torch.ones(3)] * 2}, views)
    assert load_file(views)["every_other"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_weights_with_a_zero_stride_head_are_refused_before_a_model_is_built(cli, tmp_path):
    """Once a 4.4 TB Linear for a 2**31-row head."""
    head = tmp_path / "head.pth"
    torch.save({"fc.weight": torch.zeros(1, 512).expand(2**31, 512), "fc.bias": torch.zeros(1).expand(2**31)}, head)
    with pytest.raises(UserError, match="fc.weight|fc.bias"):
        read_weights(head)
    root = write_photo_folders(tmp_path / "photos", train=2, val=1)
    assert_user_error(cli("transfer", "--data", root, "--weights", head, *SMALL[2:]), "head.pth", "crafted or damaged")
