"""Timing primitives: a timed region warmed up and synchronized, and one image's latency
(on a training's own stream, with CUDA events: its lane measures it while others train).

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


LATENCY_WARMUP = 10  # untimed forwards before the timed ones


@torch.no_grad()
def latency_ms(
    model: torch.nn.Module, device: torch.device, *, repeats: int = 50, stream: torch.cuda.Stream | None = None
) -> float:
    """Median milliseconds to classify one image (after ``LATENCY_WARMUP`` untimed passes).

    With a ``stream`` (CUDA: the training's own), on that stream: each forward between a
    pair of CUDA events recorded on it, and one wait, on the last event. No device-wide
    sync, so it holds up no other stream (lanes training beside it), and it reads the
    device's time from the stream reaching the forward to its end. Without one, host time
    between two device syncs per forward (a CPU: no sync)."""
    model.eval()
    if stream is not None:
        return _latency_on_stream(model, device, stream, repeats)
    one = torch.zeros(1, 784, device=device)
    for _ in range(LATENCY_WARMUP):
        model(one)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        model(one)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _latency_on_stream(model: torch.nn.Module, device: torch.device, stream: torch.cuda.Stream, repeats: int) -> float:
    with torch.cuda.stream(stream):
        one = torch.zeros(1, 784, device=device)
        for _ in range(LATENCY_WARMUP):
            model(one)
        pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in pairs:
            start.record(stream)
            model(one)
            end.record(stream)
    pairs[-1][1].synchronize()  # the stream's events complete in order: all are done now
    return statistics.median(start.elapsed_time(end) for start, end in pairs)
