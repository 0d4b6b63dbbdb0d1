"""Dataset files on disk: read in place and never written to, pickles that cannot run code, whole downloads.

MNIST and CIFAR are exercised through the CLI (`torchtools mnist|cifar --data ROOT`) where the commands
reach them, on the real formats written into tmp folders.
"""

import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from conftest import assert_user_error
from datafiles import CIFAR10_NAMES, FILES, coloured_picture, write_cifar10_batches, write_idx, write_mnist

MNIST_QUICK = ("--model", "mlp", "--epochs", "1", "--no-tensorboard", "--json")
CIFAR_QUICK = ("--epochs", "1", "--batch-size", "16", "--no-tensorboard", "--json")


def snapshot(root, *, times=True) -> dict:
    """Every file and folder under root (root included) with its size, content digest and, optionally,
    modification time: a folder's mtime changes when anything is created in it, even if deleted again."""
    state = {}
    for path in [root, *sorted(root.rglob("*"))]:
        stat = path.stat()
        digest = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        state[str(path.relative_to(root))] = (digest, stat.st_size if path.is_file() else 0,
                                              stat.st_mtime_ns if times else 0)
    return state


def set_writable(root, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


# --- MNIST: IDX files read in place -------------------------------------------------------------------


def test_mnist_reads_a_read_only_root_and_writes_nothing(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=40, test=10)
    before = snapshot(data)
    set_writable(data, False)  # as root this does not stop writes: the snapshot proves none happened
    try:
        run = cli("mnist", "--data", data, *MNIST_QUICK)
        assert run.exit_code == 0, run.stderr
        assert snapshot(data) == before
    finally:
        set_writable(data, True)
    assert sorted(path.name for path in (data / "MNIST" / "raw").iterdir()) == sorted(f"{name}.gz" for name in FILES)


def test_plain_idx_files_and_the_raw_folder_itself(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=40, test=10)
    raw = data / "MNIST" / "raw"
    for name in FILES:  # unpacked as torchvision leaves them
        packed = raw / f"{name}.gz"
        (raw / name).write_bytes(gzip.decompress(packed.read_bytes()))
        packed.unlink()
    summaries = []
    for target in (data, data / "MNIST", raw):
        run = cli("mnist", "--data", target, *MNIST_QUICK)
        assert run.exit_code == 0, run.stderr
        assert sum(map(sum, run.summary["confusion_matrix"])) == 10  # every test image read
        summaries.append(run.summary["metrics"])
    # The same files, read from any of the three places, train to the same numbers.
    assert summaries[0] == summaries[1] == summaries[2]


def test_gzip_is_told_by_its_magic_bytes_not_its_name(tmp_path):
    from torchtools.data.idx import read_idx

    write_idx(tmp_path / "labels", np.array([3, 1, 4], dtype=np.uint8))  # gzipped, with no .gz in its name
    assert read_idx(tmp_path / "labels").tolist() == [3, 1, 4]


def test_an_empty_gz_file_is_named(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=20, test=10)
    (data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    assert_user_error(cli("mnist", "--data", data, *MNIST_QUICK), "t10k-labels-idx1-ubyte.gz", "empty")
    assert sorted(path.name for path in (data / "MNIST" / "raw").iterdir()) == sorted(f"{name}.gz" for name in FILES)


def test_a_cut_gzip_stream_is_named(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=20, test=10)
    packed = data / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:200])
    assert_user_error(cli("mnist", "--data", data, *MNIST_QUICK), str(packed), "not a complete gzip file")


@pytest.mark.parametrize("packed", [True, False], ids=["gz", "plain"])
def test_a_truncated_idx_file_says_what_its_header_promised(cli, tmp_path, packed):
    data = write_mnist(tmp_path / "data", train=20, test=10)
    raw = data / "MNIST" / "raw"
    content = gzip.decompress((raw / "train-images-idx3-ubyte.gz").read_bytes())[:16 + 1234]
    (raw / "train-images-idx3-ubyte.gz").unlink()
    path = raw / ("train-images-idx3-ubyte.gz" if packed else "train-images-idx3-ubyte")
    path.write_bytes(gzip.compress(content) if packed else content)
    assert_user_error(cli("mnist", "--data", data, *MNIST_QUICK), str(path),
                      "header says 20 x 28 x 28 = 15,680 bytes of images, the file holds 1,234")


def test_oversized_and_foreign_idx_files(tmp_path):
    from torchtools.core.errors import UserError
    from torchtools.data.idx import read_idx

    path = tmp_path / "labels"
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes(5))
    with pytest.raises(UserError, match="3 = 3 bytes of labels, the file holds 5"):
        read_idx(path, ndim=1)
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 0x0D, 1, 1) + bytes(4))
    with pytest.raises(UserError, match="type float"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes(3))
    with pytest.raises(UserError, match="1-dimensional IDX array where images are 3-dimensional"):
        read_idx(path, ndim=3)


def test_image_and_label_counts_must_match(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=20, test=10)
    raw = data / "MNIST" / "raw"
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    assert_user_error(cli("mnist", "--data", data, *MNIST_QUICK), "t10k-images-idx3-ubyte.gz", "10 images",
                      "t10k-labels-idx1-ubyte.gz", "9 labels")


def test_labels_beyond_the_ten_classes_are_refused(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=20, test=10)
    write_idx(data / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz", np.full(20, 12, dtype=np.uint8))
    assert_user_error(cli("mnist", "--data", data, *MNIST_QUICK), "train-labels-idx1-ubyte.gz", "label 12")


# --- MNIST downloads: all or nothing ----------------------------------------------------------------------


def fake_download_url(monkeypatch, files: dict, fail_on: str | None = None):
    """torchvision's download_url replaced: writes `files[name]`, or half of it and fails for `fail_on`."""
    import torchvision.datasets.utils as tv_utils

    calls = []

    def download_url(url, root, filename=None, md5=None, **kwargs):
        calls.append((url, root))
        content = files[filename]
        target = os.path.join(root, filename)
        with open(target, "wb") as handle:
            handle.write(content[:len(content) // 2] if filename == fail_on else content)
        if filename == fail_on:
            raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(tv_utils, "download_url", download_url)
    return calls


def mnist_files(tmp_path, train=40, test=10) -> dict:
    source = write_mnist(tmp_path / "source", train=train, test=test) / "MNIST" / "raw"
    return {path.name: path.read_bytes() for path in source.iterdir()}


def test_a_failed_download_leaves_the_root_as_it_was(cli, tmp_path, monkeypatch):
    files = mnist_files(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    before = snapshot(root, times=False)
    calls = fake_download_url(monkeypatch, files, fail_on="t10k-images-idx3-ubyte.gz")
    run = cli("mnist", "--data", root, *MNIST_QUICK)
    assert_user_error(run, "download failed", "connection reset", str(root / "MNIST" / "raw"),
                      "train-images-idx3-ubyte.gz")
    assert snapshot(root, times=False) == before  # no MNIST/, no raw/, no temporary folder, no half file
    assert len(calls) >= 3 and all(os.path.dirname(folder) == str(root / "MNIST") for _, folder in calls)


def test_a_failed_download_into_a_new_root_creates_nothing(cli, tmp_path, monkeypatch):
    fake_download_url(monkeypatch, mnist_files(tmp_path), fail_on="train-images-idx3-ubyte.gz")
    assert_user_error(cli("mnist", "--data", tmp_path / "new" / "root", *MNIST_QUICK), "download failed")
    assert not (tmp_path / "new").exists()


def test_a_download_lands_whole_in_the_raw_folder(cli, tmp_path, monkeypatch):
    files = mnist_files(tmp_path)
    fake_download_url(monkeypatch, files)
    run = cli("mnist", "--data", tmp_path / "data", *MNIST_QUICK)
    assert run.exit_code == 0, run.stderr
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert {path.name: path.read_bytes() for path in raw.iterdir()} == files
    assert sorted(path.name for path in (tmp_path / "data" / "MNIST").iterdir()) == ["raw"]  # no temp left


def test_only_the_missing_file_is_downloaded(tmp_path, monkeypatch):
    from torchtools.data.vision import load_mnist

    files = mnist_files(tmp_path)
    data = write_mnist(tmp_path / "data", train=40, test=10)
    (data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    calls = fake_download_url(monkeypatch, files)
    images = load_mnist("mnist", data, download=True)
    assert [url.rsplit("/", 1)[1] for url, _ in calls] == ["t10k-labels-idx1-ubyte.gz"]
    assert images.test_labels.tolist() == list(np.arange(10) % 10)


def test_no_download_says_what_to_put_where(cli, tmp_path):
    run = cli("mnist", "--data", tmp_path / "data", "--dataset", "kmnist", "--no-download")
    assert_user_error(run, f"not found in {tmp_path / 'data' / 'KMNIST' / 'raw'}", "put train-images-idx3-ubyte.gz",
                      "t10k-labels-idx1-ubyte.gz", "--no-download")
    assert not (tmp_path / "data").exists()


# --- CIFAR: pickles that may hold arrays and nothing else --------------------------------------------------


class RunsAShellCommand:
    """What a crafted dataset file holds: unpickling it calls os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def write_cifar100(root, train=90, test=30, seed=0):
    """cifar-100-python: train, test and meta, with fine and coarse labels as the real files have."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)

    def split(count):
        labels = [index % 3 for index in range(count)]
        images = np.stack([coloured_picture(label, rng) for label in labels])
        return {"data": images.transpose(0, 3, 1, 2).reshape(count, -1), "fine_labels": labels,
                "coarse_labels": [0] * count, "filenames": [f"{index}.png" for index in range(count)]}

    (folder / "train").write_bytes(pickle.dumps(split(train), protocol=2))
    (folder / "test").write_bytes(pickle.dumps(split(test), protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"class{index}" for index in range(100)],
                                                "coarse_label_names": [f"super{index}" for index in range(20)]}))
    return root


def plant(path, marker) -> None:
    """Rewrite a batch file with a shell command beside its real keys."""
    batch = pickle.loads(path.read_bytes())
    batch["extra"] = RunsAShellCommand(f"touch {marker}")
    path.write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("dataset, folder, file", [
    ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ("cifar10", "cifar-10-batches-py", "batches.meta"),
    ("cifar100", "cifar-100-python", "train"),
    ("cifar100", "cifar-100-python", "meta"),
])
def test_a_batch_holding_code_is_refused_and_nothing_runs(cli, tmp_path, dataset, folder, file):
    data = (write_cifar10_batches if dataset == "cifar10" else write_cifar100)(tmp_path / "data")
    marker = tmp_path / "marker"
    plant(data / folder / file, marker)
    run = cli("cifar", "--data", data, "--dataset", dataset, *CIFAR_QUICK)
    assert_user_error(run, str(data / folder / file), "holds pickled code (posix.system)", "refused")
    assert not marker.exists()


def test_the_unpickler_refuses_before_calling(tmp_path):
    from torchtools.core.errors import UserError
    from torchtools.data.cifar_batches import load_pickle

    marker = tmp_path / "marker"
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps([1, RunsAShellCommand(f"touch {marker}")]))
    with pytest.raises(UserError, match="pickled code"):
        load_pickle(path)
    path.write_bytes(pickle.dumps({"codec": _CodecCall("hex")}, protocol=2))
    with pytest.raises(UserError, match="not a readable CIFAR pickle"):  # _codecs.encode, but not latin-1
        load_pickle(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps([1, RunsAShellCommand(f"touch {marker}")]))
    pickle.loads(path.read_bytes())  # the file is a real threat: an ordinary unpickling runs the command
    assert marker.exists()


class _CodecCall:
    def __init__(self, encoding):
        self.encoding = encoding

    def __reduce__(self):
        import _codecs
        return _codecs.encode, ("abc", self.encoding)


def test_cifar100_trains_and_the_folders_stay_untouched(cli, tmp_path):
    cifar100 = write_cifar100(tmp_path / "c100")
    cifar10 = write_cifar10_batches(tmp_path / "c10", train=60, test=30)
    before = snapshot(cifar100), snapshot(cifar10)
    run = cli("cifar", "--data", cifar100, "--dataset", "cifar100", *CIFAR_QUICK)
    assert run.exit_code == 0, run.stderr
    assert len(run.summary["classes"]) == 100 and run.summary["classes"][2] == "class2"
    run = cli("cifar", "--data", cifar10 / "cifar-10-batches-py", *CIFAR_QUICK)  # the batches folder itself
    assert run.exit_code == 0, run.stderr
    assert run.summary["classes"] == CIFAR10_NAMES
    assert (snapshot(cifar100), snapshot(cifar10)) == before


def test_batches_from_numpy_1_and_every_pickle_protocol_read_alike(tmp_path):
    from torchtools.data.cifar_batches import load_pickle

    batch = {"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), "labels": list(np.array([1, 2]))}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"batch{protocol}"
        path.write_bytes(pickle.dumps(batch, protocol=protocol))
        loaded = load_pickle(path)
        assert np.array_equal(loaded["data"], batch["data"]) and loaded["labels"] == [1, 2]
    # numpy 1 named its reconstruction numpy.core.multiarray (the original release's pickles do too)
    old = pickle.dumps(batch, protocol=2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in old
    (tmp_path / "old").write_bytes(old)
    assert np.array_equal(load_pickle(tmp_path / "old")["data"], batch["data"])


@pytest.mark.parametrize("change, message", [
    (lambda batch: batch.update(data=batch["data"].astype(np.float32)), "uint8"),
    (lambda batch: batch.update(data=batch["data"][:, :100]), "N x 3072"),
    (lambda batch: batch.update(labels=batch["labels"][:-1]), "images and"),
    (lambda batch: batch.update(labels=[12] * len(batch["labels"])), "labels must lie in 0..9"),
    (lambda batch: batch.update(labels=["cat"] * len(batch["labels"])), "integer labels"),
    (lambda batch: batch.pop("data"), "not a CIFAR batch"),
])
def test_malformed_batches_are_named(cli, tmp_path, change, message):
    data = write_cifar10_batches(tmp_path / "data", train=30, test=10)
    path = data / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes())
    change(batch)
    path.write_bytes(pickle.dumps(batch))
    assert_user_error(cli("cifar", "--data", data, *CIFAR_QUICK), str(path), message)


def test_a_truncated_batch_is_named(cli, tmp_path):
    data = write_cifar10_batches(tmp_path / "data", train=30, test=10)
    path = data / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    assert_user_error(cli("cifar", "--data", data, *CIFAR_QUICK), str(path), "not a readable CIFAR pickle")


def fake_archive(monkeypatch, source_folder, *, fail: bool):
    """torchvision's download_and_extract_archive replaced: unpacks a copy of source_folder, or fails half way."""
    import torchvision.datasets.utils as tv_utils

    def download_and_extract_archive(url, download_root, filename=None, md5=None, **kwargs):
        target = os.path.join(download_root, source_folder.name)
        os.makedirs(target)
        for index, path in enumerate(sorted(source_folder.iterdir())):
            if fail and index == 3:
                raise OSError("archive truncated")
            with open(os.path.join(target, path.name), "wb") as handle:
                handle.write(path.read_bytes())

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", download_and_extract_archive)


def test_cifar_download_is_all_or_nothing(tmp_path, monkeypatch):
    from torchtools.core.errors import UserError
    from torchtools.data.vision import load_cifar

    source = write_cifar10_batches(tmp_path / "source", train=30, test=10) / "cifar-10-batches-py"
    root = tmp_path / "data"
    root.mkdir()
    before = snapshot(root, times=False)
    fake_archive(monkeypatch, source, fail=True)
    with pytest.raises(UserError, match="download failed .https://.*: archive truncated.*data_batch_1"):
        load_cifar("cifar10", root, download=True)
    assert snapshot(root, times=False) == before

    fake_archive(monkeypatch, source, fail=False)
    images = load_cifar("cifar10", root, download=True)
    assert images.classes == CIFAR10_NAMES and len(images.train_labels) == 30
    assert [path.name for path in root.iterdir()] == ["cifar-10-batches-py"]
    assert snapshot(root / "cifar-10-batches-py", times=False) == snapshot(source, times=False)


def test_missing_cifar100_files_without_download(cli, tmp_path):
    (tmp_path / "data").mkdir()
    run = cli("cifar", "--data", tmp_path / "data", "--dataset", "cifar100", "--no-download")
    assert_user_error(run, str(tmp_path / "data" / "cifar-100-python"), "train, test, meta")


def test_load_cifar_gives_rgb_images_in_channel_order(tmp_path):
    from torchtools.data.vision import load_cifar

    data = write_cifar10_batches(tmp_path / "data", train=30, test=10)
    raw = pickle.loads((data / "cifar-10-batches-py" / "data_batch_2").read_bytes())
    images = load_cifar("cifar10", data, download=False)
    assert images.train_images.shape == (30, 3, 32, 32) and images.train_images.dtype == torch.uint8
    assert torch.equal(images.train_images[6:12].reshape(6, -1), torch.from_numpy(raw["data"]))
    assert images.train_labels[6:12].tolist() == raw["labels"]
