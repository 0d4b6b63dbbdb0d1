"""The benchmarks' own parts on tiny sizes: the generated photo folders and the per-child peak memory."""

import sys

import cv2

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from folders import run_measured, write_photos  # noqa: E402  (benchmarks/ is a folder of scripts)


def test_generated_photos_are_photo_sized_jpegs_in_a_train_val_layout(tmp_path):
    root = write_photos(tmp_path / "photos", 10)
    files = sorted(root.rglob("*.jpg"))
    assert len(files) == 10
    assert {path.relative_to(root).parts[:2] for path in files} == {
        ("train", "circles"), ("train", "squares"), ("val", "circles"), ("val", "squares")}
    image = cv2.imread(str(files[0]))
    assert image.shape == (375, 500, 3)
    assert max(path.stat().st_size for path in files) < 80_000  # compresses like a photo, not like noise
    files[0].unlink()
    write_photos(root, 10)  # a finished folder is reused as it is
    assert not files[0].exists()


# Allocate, then stay long enough to be sampled.
BIG = "import time; block = bytearray(300 * 2 ** 20); block[::4096] = b'x' * len(block[::4096]); time.sleep(0.4)"
SMALL = "import time; time.sleep(0.4)"
# A small process whose forked worker holds the 300 MiB (as DataLoader workers hold batches).
WITH_WORKER = ("import os, sys, time; pid = os.fork()\nif pid == 0:\n    exec(sys.argv[1]); os._exit(0)\n"
               "os.waitpid(pid, 0)")


def test_peak_memory_is_the_childs_own_not_this_process_s(tmp_path):
    big = run_measured([sys.executable, "-c", BIG], cwd=tmp_path)
    small = run_measured([sys.executable, "-c", SMALL], cwd=tmp_path)  # this pytest process holds far more
    assert big.returncode == small.returncode == 0
    assert big.peak_rss > 300 * 2 ** 20 > 100 * 2 ** 20 > small.peak_rss


def test_the_tree_figure_adds_the_workers_memory(tmp_path):
    run = run_measured([sys.executable, "-c", WITH_WORKER, BIG], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.peak_rss < 100 * 2 ** 20 and run.peak_tree_rss > 300 * 2 ** 20
