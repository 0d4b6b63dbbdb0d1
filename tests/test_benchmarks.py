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


def test_peak_memory_is_measured_per_child_not_the_largest_so_far(tmp_path):
    big = run_measured([sys.executable, "-c", "block = bytearray(300 * 2 ** 20); print('done')"], cwd=tmp_path)
    small = run_measured([sys.executable, "-c", "print('done')"], cwd=tmp_path)
    assert big.returncode == small.returncode == 0 and big.stdout.strip() == "done"
    assert big.peak_rss > 300 * 2 ** 20 > small.peak_rss
