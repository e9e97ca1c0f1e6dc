"""Timing primitives: a timed region warmed up and synchronized, and one image's latency.

Shared by the search (each trial's latency), the packing probe and the benchmarks; they
time the trainer's own code and import nothing above ``training``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mnist_bench.config import TrainConfig
from mnist_bench.model import ModelConfig
from mnist_bench.training.device import sync


@dataclass(frozen=True)
class Timing:
    """Seconds per repeat of one timed region."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def rate(self, items: float) -> dict[str, float]:
        """items/s as median, min and max over the repeats."""
        rates = [items / s for s in self.seconds]
        return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def timed(fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then time ``repeats`` runs, synchronizing around each."""
    for _ in range(warmup):
        fn()
    sync(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        seconds.append(time.perf_counter() - start)
    return Timing(tuple(seconds))


def adam_config(layers: str, batch_size: int) -> TrainConfig:
    return TrainConfig(ModelConfig.parse(layers), "adam", 1e-3, batch_size=batch_size, epochs=1)


@torch.no_grad()
def latency_ms(model: torch.nn.Module, device: torch.device, *, repeats: int = 50) -> float:
    """Median milliseconds to classify one image (after 10 untimed passes)."""
    model.eval()
    one = torch.zeros(1, 784, device=device)
    for _ in range(10):
        model(one)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        model(one)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
