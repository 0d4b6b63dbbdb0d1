"""--predict inputs: files, folders (recursive, images only), quoted globs, missing items; batched reading."""

import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from image_files import messy_folder, picture, write
from torchtools.core.errors import UserError
from torchtools.data.transforms import centre_square
from torchtools.data.image_inputs import expand_image_inputs, image_batches


@pytest.fixture
def photos(tmp_path) -> tuple[Path, list[Path], list[Path]]:
    """The messy folder plus what a real one also holds: notes, hidden folders and macOS ._ files."""
    root = tmp_path / "photos"
    readable, unreadable = messy_folder(root)
    (root / "notes.txt").write_text("not an image")
    write(root / ".thumbnails" / "small.jpg", picture(np.random.default_rng(1)))
    write(root / "cats" / "._plain.jpg", picture(np.random.default_rng(2)))
    return root, readable, unreadable


def test_a_folder_is_walked_recursively_for_image_files_only(photos):
    root, readable, unreadable = photos
    found = expand_image_inputs([root])
    assert found == sorted(readable + unreadable)  # by suffix: undecodable files are found, skipped later
    assert not any(part.startswith(".") for path in found for part in path.relative_to(root).parts)


def test_named_files_are_kept_whatever_their_suffix_and_each_path_comes_once(photos):
    root, readable, _ = photos
    odd = root / "scan.dat"
    odd.write_bytes(b"anything")
    found = expand_image_inputs([odd, readable[0], root, str(readable[0])])
    assert found[:2] == [odd, readable[0]]
    assert len(found) == len(set(found)) and readable[-1] in found


def test_quoted_globs_expand_recursively_to_images(photos, monkeypatch):
    root, readable, unreadable = photos
    monkeypatch.chdir(root)
    pngs = sorted(path.relative_to(root) for path in readable + unreadable if path.suffix == ".png")
    assert expand_image_inputs(["**/*.png"]) == pngs
    assert expand_image_inputs([str(root / "c*")]) == expand_image_inputs([root / "cats"])  # folders it matches


def test_items_naming_no_image_are_all_listed_in_one_error(photos):
    root, _, _ = photos
    (root / "empty folder").mkdir()
    with pytest.raises(UserError) as error:
        expand_image_inputs([root / "cats", root / "missing.jpg", root / "empty folder", str(root / "*.gif")])
    message = str(error.value)
    assert "\n" not in message and str(root / "cats") not in message
    for item in ("missing.jpg", "empty folder", "*.gif"):
        assert item in message


@pytest.mark.parametrize("workers", [0, 2])
def test_image_batches_read_in_order_and_hand_back_unreadable_files(photos, workers):
    root, readable, unreadable = photos
    paths = expand_image_inputs([root])
    batches = list(image_batches(paths, partial(centre_square, size=8), grayscale=False, batch_size=3,
                                 workers=workers))
    assert len(batches) == -(-len(paths) // 3)
    read = [path for ok, _, _ in batches for path in ok]
    assert read == [path for path in paths if path in readable]  # in the order given
    assert sorted(path for _, _, skipped in batches for path in skipped) == unreadable
    for ok, images, _ in batches:
        assert images.dtype == torch.uint8 and images.shape == (len(ok), 3, 8, 8)


def test_a_batch_of_only_unreadable_files_comes_back_empty(tmp_path):
    broken = [tmp_path / name for name in ("a.jpg", "b.png")]
    for path in broken:
        path.write_bytes(b"")
    ((ok, images, skipped),) = image_batches(broken, partial(centre_square, size=8), grayscale=True, batch_size=2,
                                             workers=0)
    assert ok == [] and len(images) == 0 and skipped == broken


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission_is_skipped_not_fatal(tmp_path):
    path = write(tmp_path / "locked.png", picture(np.random.default_rng(0)))
    path.chmod(0)
    ((ok, _, skipped),) = image_batches([path], partial(centre_square, size=8), grayscale=False, batch_size=4,
                                        workers=0)
    assert ok == [] and skipped == [path]
