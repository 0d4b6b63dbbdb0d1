"""The decode cache of image folders: checked when read (a damaged, planted or foreign file is decoded again,
with a warning), evicted by age and by a stated cap."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from datafiles import write_photo_folders
from torchtools.data import image_cache
from torchtools.data.folders import read_folders
from torchtools.data.transforms import centre_square


def prepare(image: np.ndarray) -> np.ndarray:
    return centre_square(image, 16)


@pytest.fixture
def photos(tmp_path):
    return write_photo_folders(tmp_path / "photos", train=3, val=2)


def read(root):
    return read_folders(root, prepare, key="test", loader="memory")


def only_cache_file(tmp_path):
    (path,) = (tmp_path / "cache").glob("images-*.cache")
    return path


def rewrite_header(path, change):
    """The cache file with its JSON header changed by `change` (the digest left as it was)."""
    magic, header, pixels = path.read_bytes().split(b"\n", 2)
    header = json.loads(header)
    change(header)
    path.write_bytes(magic + b"\n" + json.dumps(header).encode() + b"\n" + pixels)


def test_a_second_read_comes_from_the_cache_file(tmp_path, photos, capsys):
    first = read(photos)
    path = only_cache_file(tmp_path)
    assert path.read_bytes().startswith(image_cache.MAGIC)
    second = read(photos)
    assert torch.equal(first.train_images, second.train_images) and first.skipped == second.skipped
    assert "decode cache" not in capsys.readouterr().err


def zero_pixels(path):
    data = path.read_bytes()
    path.write_bytes(data[:-500] + bytes(500))


def drop_one(path):
    def change(header):
        header["kept"], header["shape"][0] = header["kept"][1:], header["shape"][0] - 1

    rewrite_header(path, change)


def swap_kept(path):
    rewrite_header(path, lambda header: header.update(kept=[header["kept"][1], header["kept"][0], *header["kept"][2:]]))


def huge_shape(path):
    """Pictures of 2**20 x 2**20 claimed: refused from the header, before anything is allocated."""
    rewrite_header(path, lambda header: header.update(shape=[header["shape"][0], 3, 2**20, 2**20]))


def fifo(path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("FIFOs are a POSIX feature")
    path.unlink()
    os.mkfifo(path)


def foreign(path):
    torch.save({"images": torch.zeros(1), "kept": [0], "skipped": []}, path)  # the format of earlier versions


@pytest.mark.parametrize("tamper, reason", [
    (zero_pixels, "digest does not match"),
    (lambda path: path.write_bytes(path.read_bytes()[:-10]), "bytes of pixels"),
    (drop_one, "skipped files"),
    (swap_kept, "indices"),
    (huge_shape, "larger than the cache's cap"),
    (lambda path: rewrite_header(path, lambda header: header.update(signature="0" * 40)), "other files"),
    (foreign, "not a torchtools decode cache"),
    (fifo, "not a regular file"),
])
def test_a_damaged_or_planted_cache_file_is_decoded_again_with_a_warning(tmp_path, photos, capsys, tamper, reason):
    fresh = read(photos)
    path = only_cache_file(tmp_path)
    tamper(path)
    capsys.readouterr()
    again = read(photos)
    assert torch.equal(again.train_images, fresh.train_images) and again.skipped == fresh.skipped
    err = capsys.readouterr().err
    assert "warning:" in err and reason in err and "decoding the pictures again" in err
    read(photos)  # rewritten whole: the next read trusts it again
    assert "decode cache" not in capsys.readouterr().err


def test_stale_files_are_evicted_by_age_and_the_folder_kept_under_the_cap(tmp_path, photos, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    now = time.time()
    for name, size, days in (("images-old.cache", 10, 31), ("images-a.cache", 4000, 2), ("images-b.cache", 3000, 1),
                             ("images-earlier.pt", 10, 0)):
        (folder / name).write_bytes(bytes(size))
        os.utime(folder / name, (now - days * 86400, now - days * 86400))
    planted = {path.name for path in folder.iterdir()}
    monkeypatch.setenv("TORCHTOOLS_CACHE_MAX_BYTES", "20K")
    read(photos)
    (written,) = {path.name for path in folder.iterdir()} - planted
    kept = sorted(path.name for path in folder.iterdir())
    assert kept == sorted(["images-a.cache", "images-b.cache", written])  # old by age, .pt from another version
    monkeypatch.setenv("TORCHTOOLS_CACHE_MAX_BYTES", str((folder / written).stat().st_size + 3500))
    image_cache.evict(folder, image_cache.cache_cap(), keep=folder / written)
    assert sorted(path.name for path in folder.iterdir()) == sorted(["images-b.cache", written])  # newest first


def test_the_cap_is_a_stated_size_and_zero_turns_the_cache_off(tmp_path, photos, monkeypatch):
    assert image_cache.cache_cap() == 2 * 1024 ** 3
    monkeypatch.setenv("TORCHTOOLS_CACHE_MAX_BYTES", "0")
    read(photos)
    assert not list((tmp_path / "cache").glob("images-*"))
    monkeypatch.setenv("TORCHTOOLS_CACHE_MAX_BYTES", "lots")
    with pytest.raises(Exception, match="TORCHTOOLS_CACHE_MAX_BYTES='lots'"):
        read(photos)
