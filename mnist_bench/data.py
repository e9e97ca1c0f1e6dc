"""MNIST on disk -> uint8 tensors -> normalized tensors on the training device.

Files live in the torchvision layout, ``<data_dir>/MNIST/raw/<name>-ubyte[.gz]``.
Each split is read once into uint8 tensors, checked against the published
checksums of its decompressed content, moved to the device once and normalized
there. Batching is done by the trainer with index slices, never per sample.
A caller that loads often and wants it fast (``speedrun``) may name a cache folder,
where each file's decompressed content and hash are kept after the first read.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mnist_bench.errors import MnistBenchError, UsageError, one_line

Split = Literal["train", "test"]

# Pixel statistics of the MNIST training set, as every tutorial uses them.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

IMAGE_SIDE = 28
N_CLASSES = 10
MNIST_TRAIN_SIZE = 60_000  # images in the official training split

# sha256 of the *decompressed* canonical files. The gzip bytes may differ between
# copies (one shared copy is recompressed), the content may not.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

FILES: dict[Split, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX magic numbers: 0x00000801 for unsigned-byte vectors, 0x00000803 for 3-D arrays.
_MAGIC = {1: 2049, 3: 2051}

HOW_TO_GET = (
    "download the four files from the MNIST page (or any mirror) into that folder, "
    "or pass --data-dir / set MNIST_BENCH_DATA to a folder that has MNIST/raw/"
)


def default_data_dir() -> Path:
    """Per-user cache folder, used when neither --data-dir nor MNIST_BENCH_DATA is set."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mnist-bench"


def raw_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


@dataclass(frozen=True)
class MnistSplit:
    """One split as loaded from disk, still on the CPU."""

    images: torch.Tensor  # uint8, (n, 28, 28)
    labels: torch.Tensor  # int64, (n,)
    sha256: dict[str, str]  # file stem -> sha256 of its decompressed content

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _find(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        raise MnistBenchError(f"{path} is truncated or not a valid gzip file ({exc})") from exc


def _content(path: Path, cache: Path | None) -> tuple[bytes, str]:
    """``path``'s decompressed content and the sha256 of it.

    With a ``cache`` folder, both are kept there after the first read, keyed by the file's
    resolved path, size and modification time, and read back from there later: a gzipped
    file is then neither decompressed nor hashed again, an uncompressed one not hashed
    again. A file changed since has another key, so it is read and hashed afresh; the
    check against the published sums runs on the kept hash all the same. The cache is a
    shortcut, never a requirement: where it cannot be read or written, the file is read.
    """
    if cache is None:
        content = _read_bytes(path)
        return content, hashlib.sha256(content).hexdigest()
    stem = path.name.removesuffix(".gz")
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    with contextlib.suppress(OSError):
        for kept in cache.glob(f"{stem}-{key}-*"):  # its name ends with the content's sha256
            # An uncompressed file is kept as an empty file: only its hash is worth keeping.
            return (kept.read_bytes() if path.suffix == ".gz" else path.read_bytes()), kept.name.rsplit("-", 1)[1]
    content = _read_bytes(path)
    digest = hashlib.sha256(content).hexdigest()
    _keep(cache, f"{stem}-{key}-{digest}", content if path.suffix == ".gz" else b"")
    return content, digest


def _keep(cache: Path, name: str, content: bytes) -> None:
    """Write ``cache/name`` whole or not at all, and remove what other versions of its file
    left there (one copy of each MNIST file, the one read last)."""
    partial = cache / f".{name}.{os.getpid()}.partial"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(content)
        partial.replace(cache / name)  # a reader never finds half a file
        stem = name.rsplit("-", 2)[0]
        for stale in cache.glob(f"{stem}-*"):
            if stale.name != name:
                stale.unlink(missing_ok=True)
    except OSError:  # a full disk or a read-only home: the next load reads the file again
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def parse_idx(content: bytes, *, ndim: int, name: str) -> np.ndarray:
    """Parse an IDX file (big-endian header, then unsigned bytes) into a uint8 array."""
    header = 4 + 4 * ndim
    if len(content) < header:
        raise MnistBenchError(f"{name} is truncated: {len(content)} bytes, no complete IDX header")
    magic = int.from_bytes(content[:4], "big")
    if magic != _MAGIC[ndim]:
        raise MnistBenchError(f"{name} is not an IDX file of {ndim} dimension(s) (magic {magic:#x})")
    dims = [int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(content) != expected:
        raise MnistBenchError(
            f"{name} is truncated or padded: {len(content)} bytes, expected {expected} for shape {tuple(dims)}"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims)


def load_split(data_dir: Path, split: Split, *, verify: bool = True, cache: Path | None = None) -> MnistSplit:
    """Read one split from ``<data_dir>/MNIST/raw``.

    ``verify`` compares the decompressed content with the published MNIST checksums;
    turn it off only for other data in the same format (e.g. Fashion-MNIST or test
    fixtures). ``cache``: a folder that keeps each file's decompressed content and hash
    for the next load (``_content``).
    """
    raw = raw_dir(data_dir)
    stems = FILES[split]
    paths = [_find(raw, stem) for stem in stems]
    missing = [stem for stem, path in zip(stems, paths, strict=True) if path is None]
    if missing:
        raise MnistBenchError(f"MNIST {split} files not found in {raw} (missing {', '.join(missing)}): {HOW_TO_GET}")
    arrays = []
    digests = {}
    for stem, path, ndim in zip(stems, paths, (3, 1), strict=True):
        assert path is not None
        content, digest = _content(path, cache)
        if verify and digest != SHA256[stem]:
            raise MnistBenchError(
                f"{path} is corrupted: sha256 of its content is {digest[:16]}..., "
                f"expected {SHA256[stem][:16]}... (pass --no-verify for non-MNIST data)"
            )
        arrays.append(parse_idx(content, ndim=ndim, name=str(path)))
        digests[stem] = digest
    images, labels = arrays
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise MnistBenchError(
            f"{split} images {images.shape} and labels {labels.shape} do not match "
            f"(expected (n, {IMAGE_SIDE}, {IMAGE_SIDE}) and (n,))"
        )
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise MnistBenchError(f"{split} labels go up to {int(labels.max())}, expected 0-9")
    return MnistSplit(
        images=torch.from_numpy(images.copy()),
        labels=torch.from_numpy(labels.astype(np.int64)),
        sha256=digests,
    )


def download(data_dir: Path) -> None:
    """Fetch MNIST with torchvision, which is imported only here.

    torchvision is optional (the ``download`` extra): on machines where it is missing,
    broken or offline, the caller gets one line saying where the files are expected.
    """
    try:
        import torchvision  # noqa: PLC0415  (optional, heavy, sometimes unimportable)
    except Exception as exc:  # an ImportError, or a binary that does not match torch
        raise MnistBenchError(
            f"MNIST files not found in {raw_dir(data_dir)} and torchvision cannot be "
            f"imported to download them ({type(exc).__name__}): {HOW_TO_GET}"
        ) from exc
    try:
        for train in (True, False):
            torchvision.datasets.MNIST(str(data_dir), train=train, download=True)
    except Exception as exc:  # network errors come in many types, often with many lines of mirror URLs
        raise MnistBenchError(
            f"MNIST files not found in {raw_dir(data_dir)} and the download failed ({_first_line(exc)}): {HOW_TO_GET}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    """``exc`` in one line, URL-free: torchvision's errors list every mirror it tried."""
    return " ".join(word for word in one_line(exc).split() if "://" not in word).rstrip(":")


def ensure_split(data_dir: Path, split: Split, *, verify: bool = True, cache: Path | None = None) -> MnistSplit:
    """``load_split``, downloading first when the files are not there at all."""
    raw = raw_dir(data_dir)
    if all(_find(raw, stem) is None for stem in FILES[split]):
        download(data_dir)
    return load_split(data_dir, split, verify=verify, cache=cache)


def validation_indices(n: int, val_size: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded split of ``range(n)`` into (train, validation) indices.

    The seed is a property of the split, not of the study: every study on the same
    data scores its trials on the same validation images.
    """
    if not 0 < val_size < n:
        raise UsageError(f"val_size={val_size} must be between 1 and {n - 1} (the training set has {n} images)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float32 (n, 784), standardized; runs on images' device."""
    flat = images.reshape(images.shape[0], -1).to(torch.float32, copy=True)
    # In place, the same three operations in the same order (so the same bits) as
    # (flat / 255 - mean) / std, without allocating and touching 188 MB three more times.
    return flat.div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)


@dataclass(frozen=True)
class DeviceData:
    """Training and evaluation tensors, resident on one device for a whole run."""

    x_train: torch.Tensor  # float32 (n, 784), normalized
    y_train: torch.Tensor  # int64 (n,)
    x_eval: torch.Tensor  # validation during search, test during final evaluation
    y_eval: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    @classmethod
    def from_splits(cls, train: MnistSplit, evaluation: MnistSplit, device: torch.device) -> DeviceData:
        return cls._build(train.images, train.labels, evaluation.images, evaluation.labels, device)

    @classmethod
    def with_validation(
        cls, train: MnistSplit, device: torch.device, *, val_size: int, split_seed: int = 0
    ) -> DeviceData:
        """Hold out ``val_size`` training images for validation; the test split stays unread."""
        train_idx, val_idx = validation_indices(len(train), val_size, seed=split_seed)
        return cls._build(
            train.images[train_idx], train.labels[train_idx],
            train.images[val_idx], train.labels[val_idx],
            device,
        )  # fmt: skip

    @classmethod
    def _build(
        cls,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_eval: torch.Tensor,
        y_eval: torch.Tensor,
        device: torch.device,
    ) -> DeviceData:
        # Copy uint8 (4x smaller than float32) and convert on the device.
        return cls(
            x_train=normalize(x_train.to(device)),
            y_train=y_train.to(device),
            x_eval=normalize(x_eval.to(device)),
            y_eval=y_eval.to(device),
        )
