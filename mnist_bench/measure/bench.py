"""Timing benchmarks: the trainer's step against the hardware floor and the classic pipeline.

Method (airbench's habits): every timed region is preceded by untimed warm-up steps,
the device is synchronized before and after it, each figure is the median of several
repeats with its min and max, and every row carries the device, versions and CPU count.
The loop timed is the trainer's own (``Training``'s runner: a replayed CUDA graph on a
GPU, eager steps on a CPU), so the figures are the search's and ``train``'s, not a
lookalike's. The floor is the hardware's: a step's FLOPs at the measured matmul rate or
its bytes at the measured copy bandwidth, whichever takes longer.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from functools import partial
from itertools import pairwise
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import MNIST_MEAN, MNIST_STD, DeviceData, MnistSplit
from mnist_bench.model import ModelConfig
from mnist_bench.optimizers import optimizer_spec
from mnist_bench.training.device import environment, sync
from mnist_bench.training.lanes import lanes_for
from mnist_bench.training.start import seeded_model
from mnist_bench.training.timing import adam_config, timed
from mnist_bench.training.trainer import Training

# The networks MNIST tutorials use, plus the wide one of the accuracy issue.
NETWORKS = ("784-128-64-10", "784-128-10", "784-500-10", "784-256-128-64-32-10", "784-1024-1024-10")
BATCH_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


def _peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None  # no allocator statistics for the CPU


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _subset(data: DeviceData, n: int) -> DeviceData:
    """``n`` training images (a timed run's worth; repeated if there are fewer), the same evaluation split."""
    index = torch.arange(n, device=data.device) % data.x_train.shape[0]
    return DeviceData(data.x_train[index], data.y_train[index], data.x_eval, data.y_eval)


def trainer_throughput(
    config: TrainConfig, data: DeviceData, runtime: Runtime, *, steps: int, repeats: int, warmup: int
) -> dict[str, Any]:
    """Samples/s of the trainer's own epoch (graphed on CUDA unless ``runtime.graphs`` is off).

    Each timed repeat is one epoch of ``steps`` full batches of device-resident images,
    unscored: ``Training.run_epoch``, the very epoch ``search`` and ``train`` run, its one
    sync for the loss included. The training lasts the warm-up's epochs and the timed ones,
    so a schedule runs its whole course.
    """
    device = data.device
    _reset_peak(device)
    bs = config.batch_size
    n = steps * bs
    warm_epochs = max(1, warmup // steps)
    config = replace(config, epochs=warm_epochs + repeats)
    training = Training(config, _subset(data, n), score_epochs=False, runtime=runtime)
    try:
        timing = timed(training.run_epoch, device, warmup=warm_epochs, repeats=repeats)
    finally:
        training.release()
    rate = timing.rate(n)
    return {
        "samples_per_s": rate["median"],
        "samples_per_s_min": rate["min"],
        "samples_per_s_max": rate["max"],
        "step_ms": timing.median / (n // bs) * 1e3,
        "epoch_s": data.x_train.shape[0] / rate["median"],
        "peak_mem_mb": _peak_memory_mb(device),
        "step": "graphed" if training.graphed else "eager",
        "eager_reason": training.eager_reason or "",
    }


def inflight_throughput(
    layers: str,
    batch_size: int,
    k: int,
    data: DeviceData,
    *,
    steps: int,
    repeats: int,
    warmup: int,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """K trainings of ``layers`` side by side, as ``search --parallel K`` runs them: aggregate samples/s.

    Each has its own lane, as the search's: a thread, and on CUDA a stream (and graph) too.
    A timed repeat is one round: an epoch of ``steps`` batches each.
    """
    device = data.device
    n = steps * batch_size
    subset = _subset(data, n)
    lanes = lanes_for(k, device)  # a thread each, and on CUDA a stream, as the search's lanes
    trainings = [
        lane.run(partial(Training, replace(adam_config(layers, batch_size), seed=lane.index, epochs=10**6),
                         subset, score_epochs=False, stream=lane.stream, runtime=runtime))
        for lane in lanes
    ]  # fmt: skip

    def one_round() -> None:
        for future in [lane.submit(t.run_epoch) for lane, t in zip(lanes, trainings, strict=True)]:
            future.result()

    timing = timed(one_round, device, warmup=max(1, warmup // (n // batch_size)), repeats=repeats)
    for training in trainings:
        training.release()
    rate = timing.rate(k * n)
    return {
        "samples_per_s": rate["median"],
        "per_trial_samples_per_s": rate["median"] / k,
        "samples_per_s_min": rate["min"],
        "samples_per_s_max": rate["max"],
        "step": "graphed" if all(t.graphed for t in trainings) else "eager",
    }


class ClassicDataset(Dataset[tuple[torch.Tensor, int]]):
    """MNIST as tutorials read it: one PIL image per item, ToTensor and Normalize per sample.

    This is what ``torchvision.datasets.MNIST(transform=Compose([ToTensor(),
    Normalize((0.1307,), (0.3081,))]))`` does per item, written out so that the
    comparison runs where torchvision cannot be imported.
    """

    def __init__(self, split: MnistSplit) -> None:
        self.images = split.images
        self.labels = split.labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image  # noqa: PLC0415

        image = Image.fromarray(self.images[i].numpy(), mode="L")
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).to(torch.float32).div(255).unsqueeze(0)
        return (tensor - MNIST_MEAN) / MNIST_STD, int(self.labels[i])


def classic_throughput(
    config: TrainConfig, split: MnistSplit, device: torch.device, *, steps: int, repeats: int, warmup: int
) -> dict[str, Any]:
    """Samples/s of the tutorial loop: DataLoader, per-batch host-to-device copy, loss.item()."""
    model = seeded_model(config, device)
    update = optimizer_spec(config.optimizer).make(model.parameters(), config, device)
    loader = DataLoader(ClassicDataset(split), batch_size=config.batch_size, shuffle=True)
    batches = iter(loader)

    def run() -> None:
        nonlocal batches
        running_loss = 0.0
        for _ in range(steps):
            try:
                images, labels = next(batches)
            except StopIteration:
                batches = iter(loader)
                images, labels = next(batches)
            images, labels = images.to(device).view(images.shape[0], -1), labels.to(device)
            model.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            update.step()
            running_loss += loss.item()  # the tutorials' per-batch sync

    timing = timed(run, device, warmup=max(1, warmup // steps), repeats=repeats)
    rate = timing.rate(steps * config.batch_size)
    return {
        "samples_per_s": rate["median"],
        "samples_per_s_min": rate["min"],
        "samples_per_s_max": rate["max"],
        "step_ms": timing.median / steps * 1e3,
        "epoch_s": len(split) / rate["median"],
    }


@torch.no_grad()
def inference(layers: str, device: torch.device, *, batch: int, iterations: int, warmup: int) -> dict[str, Any]:
    """Latency of one image (median, p99) and throughput at a large batch."""
    model = seeded_model(adam_config(layers, 1), device).eval()
    one = torch.randn(1, 784, device=device)
    for _ in range(warmup):
        model(one)
    sync(device)
    latencies = []
    for _ in range(iterations):
        start = time.perf_counter()
        model(one)
        sync(device)
        latencies.append(time.perf_counter() - start)
    big = torch.randn(batch, 784, device=device)
    timing = timed(lambda: model(big), device, warmup=warmup // 10 + 1, repeats=max(3, iterations // 20))
    return {
        "latency_ms_median": statistics.median(latencies) * 1e3,
        "latency_ms_p99": float(np.percentile(latencies, 99)) * 1e3,
        "throughput_images_per_s": timing.rate(batch)["median"],
        "batch": batch,
    }


def matmul_flops(
    device: torch.device,
    *,
    size: int,
    repeats: int,
    dtype: torch.dtype = torch.float32,
    rows: int | None = None,
    inner: int = 1,
) -> float:
    """The device's measured dense matmul rate (FLOP/s): the floor's compute term.

    ``rows`` x ``size`` times ``size`` x ``size`` (square unless ``rows`` is given: a batch
    through a layer), ``inner`` products per timed run so that a GPU's launch and
    synchronization latency do not count against a small product.
    """
    a = torch.randn(rows or size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def products() -> None:
        for _ in range(inner):
            a @ b

    timing = timed(products, device, warmup=3, repeats=repeats)
    return 2 * (rows or size) * size**2 * inner / timing.median


def copy_bandwidth(device: torch.device, *, megabytes: int, repeats: int) -> float:
    """The device's measured memory bandwidth (bytes/s, read plus write of one large copy): the memory term."""
    src = torch.empty(megabytes * 2**20 // 4, device=device, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    timing = timed(lambda: dst.copy_(src), device, warmup=3, repeats=repeats)
    return 2 * src.numel() * 4 / timing.median


def _sizes(layers: str) -> tuple[int, ...]:
    return (784, *ModelConfig.parse(layers).hidden, 10)


def train_flops_per_sample(layers: str) -> int:
    """Forward 2 FLOPs per weight, backward twice that: 6 per weight per sample."""
    return 6 * sum(a * b for a, b in pairwise(_sizes(layers)))


def train_bytes_per_step(layers: str, batch_size: int) -> int:
    """Least memory traffic of an Adam step in float32, assuming nothing stays in cache.

    Weights: read in forward, read again and gradients written in backward, then Adam
    reads weight, gradient and two moments and writes weight and moments: 10 accesses of
    4 bytes. Activations: each layer's output written in forward and read in backward,
    its gradient written and read: 4 accesses. The batch gathered from the data: read
    and written once.
    """
    sizes = _sizes(layers)
    weights = sum(a * b + b for a, b in pairwise(sizes))
    activations = batch_size * sum(sizes[1:])
    return 4 * (10 * weights + 4 * activations + 2 * batch_size * sizes[0])


def floor_row(layers: str, batch_size: int, flops_per_s: float, bytes_per_s: float) -> dict[str, Any]:
    """The fastest the hardware could run a step: its FLOPs at the matmul rate or its bytes at the bandwidth."""
    compute_s = train_flops_per_sample(layers) * batch_size / flops_per_s
    memory_s = train_bytes_per_step(layers, batch_size) / bytes_per_s
    step_s = max(compute_s, memory_s)
    return {
        "floor_samples_per_s": batch_size / step_s,
        "floor_step_ms": step_s * 1e3,
        "bound": "compute" if compute_s >= memory_s else "memory",
    }


def environment_row(device: torch.device) -> dict[str, Any]:
    return {f"env_{key}": value for key, value in environment(device).items()}
