from __future__ import annotations

import gzip
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from mnist_bench import data
from mnist_bench.data import (
    MNIST_MEAN,
    MNIST_STD,
    DeviceData,
    ensure_split,
    load_split,
    normalize,
    validation_indices,
)
from mnist_bench.errors import MnistBenchError
from tests.conftest import make_mnist_dir, synthetic_digits, write_idx


@pytest.mark.parametrize("compress", [True, False])
def test_load_split_reads_back_what_was_written(tmp_path: Path, compress: bool) -> None:
    root = make_mnist_dir(tmp_path, n_train=50, n_test=20, compress=compress)
    train = load_split(root, "train", verify=False)
    images, labels = synthetic_digits(50, seed=0)
    assert train.images.dtype == torch.uint8 and train.images.shape == (50, 28, 28)
    assert torch.equal(train.images, torch.from_numpy(images))
    assert torch.equal(train.labels, torch.from_numpy(labels).long())
    assert len(load_split(root, "test", verify=False)) == 20


def test_checksum_mismatch_names_the_file(tiny_mnist: Path) -> None:
    with pytest.raises(MnistBenchError, match=r"train-images-idx3-ubyte.gz is corrupted: sha256"):
        load_split(tiny_mnist, "train")


def test_truncated_gzip_is_reported(tiny_mnist: Path) -> None:
    path = tiny_mnist / "MNIST/raw/train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MnistBenchError, match="truncated or not a valid gzip"):
        load_split(tiny_mnist, "train", verify=False)


def test_truncated_content_says_what_was_expected(tiny_mnist: Path) -> None:
    path = tiny_mnist / "MNIST/raw/train-labels-idx1-ubyte.gz"
    content = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(content[:-10]))
    with pytest.raises(MnistBenchError, match=r"expected 608 for shape \(600,\)"):
        load_split(tiny_mnist, "train", verify=False)


def test_wrong_magic_is_reported(tiny_mnist: Path) -> None:
    path = tiny_mnist / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20))
    with pytest.raises(MnistBenchError, match="not an IDX file"):
        load_split(tiny_mnist, "test", verify=False)


@pytest.fixture
def offline_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchvision that imports but cannot reach the network, failing as the real one does offline."""

    def mnist(root: str, train: bool, download: bool) -> None:
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\n"
            "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got:\n<urlopen error [Errno -3] failure>\n"
            "Tried http://yann.lecun.com/exdb/mnist/, got:\n<urlopen error [Errno -3] failure>"
        )

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=mnist)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", fake)


@pytest.mark.parametrize("with_torchvision", [False, True])
def test_missing_files_say_where_they_are_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_torchvision: bool, request: pytest.FixtureRequest
) -> None:
    # No network here; torchvision absent, or present and offline: one line that guides the user.
    if with_torchvision:
        request.getfixturevalue("offline_torchvision")
    else:
        monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails, as where it is not installed
    with pytest.raises(MnistBenchError, match=r"MNIST/raw.*--data-dir") as caught:
        ensure_split(tmp_path / "nowhere", "train")
    message = str(caught.value)
    assert "\n" not in message and "://" not in message
    assert ("download failed (RuntimeError: Error downloading" in message) == with_torchvision


def test_one_missing_file_is_named(tiny_mnist: Path) -> None:
    (tiny_mnist / "MNIST/raw/train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MnistBenchError, match="missing train-labels-idx1-ubyte"):
        ensure_split(tiny_mnist, "train", verify=False)


def test_validation_split_is_fixed_disjoint_and_complete() -> None:
    train_a, val_a = validation_indices(1000, 100, seed=0)
    train_b, val_b = validation_indices(1000, 100, seed=0)
    assert torch.equal(val_a, val_b) and torch.equal(train_a, train_b)
    assert len(val_a) == 100 and len(train_a) == 900
    assert torch.equal(torch.cat([train_a, val_a]).sort().values, torch.arange(1000))
    _, val_other = validation_indices(1000, 100, seed=1)
    assert not torch.equal(val_a, val_other)


def test_validation_size_out_of_range() -> None:
    with pytest.raises(MnistBenchError, match="val_size=1000"):
        validation_indices(1000, 1000)


def test_normalize_standardizes_on_the_input_device() -> None:
    images = torch.zeros(1, 28, 28, dtype=torch.uint8)
    images[0, 0, 1] = 255
    out = normalize(images)
    assert out.shape == (1, 784) and out.dtype == torch.float32 and out.device == images.device
    assert out[0, 0].item() == pytest.approx((0 - MNIST_MEAN) / MNIST_STD)
    assert out[0, 1].item() == pytest.approx((1 - MNIST_MEAN) / MNIST_STD)


def test_normalize_gives_the_bits_of_the_formula_and_leaves_its_input() -> None:
    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    floats = images.float()
    expected = (floats.reshape(64, -1) / 255.0 - MNIST_MEAN) / MNIST_STD
    assert torch.equal(normalize(images), expected)  # in place, the same bits as the formula
    assert torch.equal(normalize(floats), expected) and torch.equal(floats, images.float())


def test_a_cache_keeps_each_files_content_and_hash_for_the_next_load(
    tiny_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = load_split(tiny_mnist, "train", verify=False, cache=cache)
    kept = sorted(path.name for path in cache.iterdir())
    assert [name.rsplit("-", 2)[0] for name in kept] == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    assert [name.rsplit("-", 1)[1] for name in kept] == [first.sha256[stem] for stem in sorted(first.sha256)]

    def unread(path: Path) -> bytes:
        raise AssertionError(f"{path} decompressed again")

    monkeypatch.setattr(data, "_read_bytes", unread)
    again = load_split(tiny_mnist, "train", verify=False, cache=cache)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.sha256 == first.sha256
    with pytest.raises(MnistBenchError, match="train-images-idx3-ubyte.gz is corrupted"):  # checked on the kept hash
        load_split(tiny_mnist, "train", cache=cache)


def test_a_changed_file_is_read_again_and_its_old_copy_dropped(tiny_mnist: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_split(tiny_mnist, "train", verify=False, cache=cache)
    path = tiny_mnist / "MNIST/raw/train-labels-idx1-ubyte"
    labels = (synthetic_digits(600, seed=0)[1] + 1) % 10
    write_idx(path, labels)
    mtime = path.with_suffix(".gz").stat().st_mtime_ns + 10**9  # another time, however coarse the clock
    os.utime(path.with_suffix(".gz"), ns=(mtime, mtime))
    changed = load_split(tiny_mnist, "train", verify=False, cache=cache)
    assert torch.equal(changed.labels, torch.from_numpy(labels).long())
    assert len(list(cache.glob("train-labels-idx1-ubyte-*"))) == 1


def test_uncompressed_files_keep_only_their_hash_and_an_unwritable_cache_is_passed_by(tmp_path: Path) -> None:
    root = make_mnist_dir(tmp_path / "data", n_train=50, n_test=20, compress=False)
    cache = tmp_path / "cache"
    first = load_split(root, "test", verify=False, cache=cache)
    assert [path.stat().st_size for path in cache.iterdir()] == [0, 0]
    assert torch.equal(load_split(root, "test", verify=False, cache=cache).images, first.images)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert torch.equal(load_split(root, "test", verify=False, cache=blocked).images, first.images)


def test_device_data_holds_out_validation_from_train(tiny_mnist: Path) -> None:
    split = load_split(tiny_mnist, "train", verify=False)
    data = DeviceData.with_validation(split, torch.device("cpu"), val_size=100)
    assert data.x_train.shape == (500, 784) and data.x_eval.shape == (100, 784)
    assert data.y_train.dtype == torch.int64


@pytest.mark.slow
def test_real_mnist_passes_its_checksums(real_mnist: Path) -> None:
    train = load_split(real_mnist, "train")
    test = load_split(real_mnist, "test")
    assert len(train) == 60000 and len(test) == 10000
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
