"""Fixtures: tiny but real MNIST-format files on disk, and the real MNIST copy when present."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_bench.data import DeviceData, load_split

# pytest-xdist runs two test processes on two cores: one torch thread each (and for the
# processes they start), or their OpenMP threads wait on one another for the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# CI and development machines keep the real MNIST beside the checkout, in ../shared/data.
REAL_DATA = Path(os.environ.get("MNIST_BENCH_REAL_DATA", REPO.parent / "shared" / "data"))


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped like the official downloads."""
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    content = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)
    return path


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus a bright 6x6 patch whose position encodes the label: learnable in an epoch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = 3 + 13 * (label // 5), 1 + 5 * (label % 5)
        images[i, row : row + 6, col : col + 6] = 255
    return images, labels


def make_mnist_dir(root: Path, *, n_train: int = 600, n_test: int = 200, compress: bool = True) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress=compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress=compress)
    return root


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A data dir in the torchvision layout with 600 train and 200 test synthetic images."""
    return make_mnist_dir(tmp_path / "data")


@pytest.fixture
def tiny_data(tiny_mnist: Path) -> DeviceData:
    return DeviceData.with_validation(load_split(tiny_mnist, "train", verify=False), torch.device("cpu"), val_size=100)


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    if not (REAL_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST copy not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def real_mnist_subset(real_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12,000 training and 2,000 test images of the real MNIST, as IDX files: real
    digits where the full set is not the point (read with --no-verify: not MNIST's checksums)."""
    raw = tmp_path_factory.mktemp("real-subset") / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, prefix, n in (("train", "train", 12_000), ("test", "t10k", 2_000)):
        loaded = load_split(real_mnist, split)  # type: ignore[arg-type]
        write_idx(raw / f"{prefix}-images-idx3-ubyte", loaded.images[:n].numpy())
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", loaded.labels[:n].numpy().astype(np.uint8))
    return raw.parents[1]
