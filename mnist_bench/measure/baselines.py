"""The networks MNIST tutorials usually write by hand, trained the way they train them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from mnist_bench.artifacts.final import train_and_test
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.model import ModelConfig
from mnist_bench.optimizers import optimizer_spec


@dataclass(frozen=True)
class Baseline:
    name: str  # short label for tables
    config: TrainConfig  # architecture, optimizer, epochs and batch size as tutorials use them
    reported: str  # the test accuracy such tutorials report ("-" where none is given)


def _adam(hidden: tuple[int, ...], *, batch_size: int, epochs: int) -> TrainConfig:
    # Tutorials that say "Adam" and nothing more use the library default, lr 1e-3.
    return TrainConfig(ModelConfig(hidden), "adam", 1e-3, batch_size=batch_size, epochs=epochs)


# Epochs and batch sizes: the values the tutorial families behind each row use
# (the PyTorch examples' 64/10; the Keras beginner quickstart's 32/5; the classic
# "feed-forward net" PyTorch tutorial's 100/5). See docs/guide.md, "baselines".
BASELINES: tuple[Baseline, ...] = (
    Baseline(
        "784-128-64-10 SGD",
        TrainConfig(ModelConfig((128, 64)), "sgd", 0.01, momentum=0.5, batch_size=64, epochs=10),
        "94%",
    ),
    Baseline("784-128-10 Adam", _adam((128,), batch_size=32, epochs=5), "97.83%"),
    Baseline("784-128-10 Adam lr 1e-3", _adam((128,), batch_size=64, epochs=10), "~97%"),
    Baseline("784-500-10 Adam", _adam((500,), batch_size=100, epochs=5), "-"),
    Baseline("784-256-128-64-32-10 Adam", _adam((256, 128, 64, 32), batch_size=64, epochs=10), "-"),
)


def describe(config: TrainConfig) -> str:
    """One line of the recipe: the registry's name for the optimizer, its rates, batch and epochs."""
    spec = optimizer_spec(config.optimizer)
    momentum = f" momentum {config.momentum:g}" if spec.momentum else ""
    decay = f" weight decay {config.weight_decay:g}" if config.weight_decay else ""
    return f"{spec.display} lr {config.lr:g}{momentum}{decay}, batch {config.batch_size}, {config.epochs} epochs"


def run_baselines(
    baselines: Sequence[Baseline], data: DeviceData, seeds: list[int], *, runtime: Runtime | None = None
) -> pd.DataFrame:
    """Train each baseline once per seed on the full training set; test accuracy mean and std."""
    rows = []
    for baseline in baselines:
        report = train_and_test(baseline.config, data, seeds, runtime=runtime)
        times = [run.result.train_time_s for run in report.runs]
        speeds = [run.result.samples_per_s for run in report.runs]
        rows.append(
            {
                "network": baseline.name,
                "layers": baseline.config.model.layers,
                "settings": describe(baseline.config),
                "reported": baseline.reported,
                "test_acc_mean": report.mean,
                "test_acc_std": report.std,
                "seeds": len(seeds),
                "train_time_s": statistics.fmean(times),
                "samples_per_s": statistics.fmean(speeds),
            }
        )
    return pd.DataFrame(rows)
