"""Packing several trials onto one device: how many, and which way.

Two ways were measured (``mnist-bench bench --section packing``, figures and the
reasoning in docs/benchmarks.md):

- **processes**: K worker processes per device, each training its own trial and
  sharing the study through the storage (``mnist_bench.search.workers``). Any trials can run
  side by side (every TPE trial has its own widths, batch size, optimizer and schedule),
  each is pruned on its own, and an out-of-memory or NaN trial fails alone.
- **stacked**: K same-shaped models trained as one, their weights stacked along a
  leading dimension and every layer a batched matmul (``StackedMLP``). It needs the K
  trials to share widths, batch size and optimizer kind, which a search over per-layer
  widths almost never samples, so it is kept here as the measured upper bound that the
  processes are compared with, not as a search mode.

How many workers ``--workers auto`` picks is ``search.capacity``'s.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnist_bench.augment import DEFAULT_DEFORM, Augmenter
from mnist_bench.config import Runtime
from mnist_bench.data import DeviceData
from mnist_bench.model import ModelConfig, build_mlp
from mnist_bench.training.device import sync
from mnist_bench.training.start import make_step, schedule_table, seeded_model
from mnist_bench.training.timing import adam_config, timed


class StackedMLP(nn.Module):
    """K MLPs of one shape as a single module: layer weights (K, in, out), inputs (K, B, in).

    Model k starts from exactly the weights ``build_mlp`` gives under seed ``seeds[k]``,
    so its training can be checked against the same model trained alone.
    """

    def __init__(self, config: ModelConfig, seeds: list[int]) -> None:
        super().__init__()
        if config.dropout:
            raise ValueError("StackedMLP has no dropout")
        singles = []
        for seed in seeds:
            model = build_mlp(config, generator=torch.Generator().manual_seed(seed))
            singles.append([m for m in model if isinstance(m, nn.Linear)])
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i].weight.detach().t() for layers in singles]))
            for i in range(len(singles[0]))
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i].bias.detach().unsqueeze(0) for layers in singles]))
            for i in range(len(singles[0]))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                x = F.relu(x)
        return x


def stacked_step(model: StackedMLP, optimizer: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One step of all K models: the sum of their mean losses, so each gets its own gradient."""
    k, b = yb.shape
    losses = F.cross_entropy(model(xb).reshape(k * b, -1), yb.reshape(-1), reduction="none").view(k, b)
    optimizer.zero_grad(set_to_none=True)
    losses.mean(dim=1).sum().backward()
    optimizer.step()


def stacked_optimizer(model: nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam is elementwise, so one Adam over stacked weights is K independent Adams."""
    if device.type == "cuda":
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


def stacked_throughput(
    layers: str, batch_size: int, k: int, data: DeviceData, *, steps: int, repeats: int, warmup: int
) -> dict[str, Any]:
    """Aggregate samples/s of K stacked 784-...-10 models, Adam lr 1e-3, each on its own batches."""
    device = data.device
    model = StackedMLP(ModelConfig.parse(layers), list(range(k))).to(device)
    optimizer = stacked_optimizer(model, 1e-3, device)
    n = data.x_train.shape[0]
    generator = torch.Generator(device=device).manual_seed(0)

    def run() -> None:
        for _ in range(steps):
            idx = torch.randint(n, (k, batch_size), device=device, generator=generator)
            stacked_step(model, optimizer, data.x_train[idx], data.y_train[idx])

    timing = timed(run, device, warmup=max(1, warmup // steps), repeats=repeats)
    return {"samples_per_s": timing.rate(k * steps * batch_size)["median"]}


@dataclass(frozen=True)
class _ProcessJob:
    layers: str
    batch_size: int
    device: str
    threads: int
    steps: int
    repeats: int
    warmup: int


def _process_worker(job: _ProcessJob, x: torch.Tensor, y: torch.Tensor, barrier: Any, results: Any) -> None:
    torch.set_num_threads(job.threads)
    device = torch.device(job.device)
    x, y = x.to(device), y.to(device)
    config = adam_config(job.layers, job.batch_size)
    model = seeded_model(config, device)
    generator = torch.Generator(device=device).manual_seed(0)
    augment = Augmenter("none", DEFAULT_DEFORM, device)
    table = schedule_table(config, x.shape[0])
    data = DeviceData(x, y, x[:1], y[:1])
    step = make_step(model, config, data, Runtime(), generator=generator, augment=augment, table=table)

    def run(steps: int) -> None:
        for _ in range(steps):
            idx = torch.randint(x.shape[0], (job.batch_size,), device=device, generator=generator)
            step(idx)
        sync(device)

    run(job.warmup)
    barrier.wait()  # all K start timing together
    start = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
    run(job.steps * job.repeats)
    results.put((start, time.monotonic(), job.steps * job.repeats * job.batch_size))


def process_throughput(
    layers: str, batch_size: int, k: int, data: DeviceData, *, steps: int, repeats: int, warmup: int
) -> dict[str, Any]:
    """Aggregate samples/s of K processes training one model each, side by side, on one device.

    Timed from the first process's start to the last one's end, after every process
    has loaded its data and warmed up; on the CPU the cores are split between them as
    the search's workers split them.
    """
    device = data.device
    context = mp.get_context("spawn")
    barrier = context.Barrier(k)
    results = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // k)
    job = _ProcessJob(layers, batch_size, str(device), threads, steps, repeats, warmup)
    x, y = data.x_train.cpu(), data.y_train.cpu()
    processes = [
        context.Process(target=_process_worker, args=(job, x, y, barrier, results), name=f"mnist-bench-pack-{i}")
        for i in range(k)
    ]
    for process in processes:
        process.start()
    spans = [results.get(timeout=600) for _ in range(k)]
    for process in processes:
        process.join()
    wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return {"samples_per_s": sum(samples for *_, samples in spans) / wall}


def packing_gain(rows: list[dict[str, Any]]) -> None:
    """Add each row's speedup over one trial at a time (the K=1 row of the same method)."""
    base = {row["method"]: row["samples_per_s"] for row in rows if row["trials"] == 1}
    for row in rows:
        one = base.get(row["method"], math.nan)
        row["vs_one_trial"] = row["samples_per_s"] / one
