"""A speedrun: a recipe trained from fresh weights once per seed, each run timed and tested once.

Each run is ``training.trainer.train`` of the recipe's config with the run's seed, on all
the training images, with no validation pass and no look at the test images; its time is
the trainer's, from its first step to its last (augmentation included, evaluation and
the building of the model excluded); then one pass over the test images scores it. The
runs go one after another, also on a GPU, so that each is timed alone. The target is met
by the mean accuracy over the runs, not the best one.
"""

from __future__ import annotations

import datetime
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mnist_bench import __version__
from mnist_bench.config import Runtime
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.interrupt import StopFlag
from mnist_bench.speedrun.recipe import Provenance, Recipe
from mnist_bench.training.device import device_name, environment
from mnist_bench.training.trainer import accuracy, train


@dataclass(frozen=True)
class SpeedrunRun:
    seed: int  # the run's training seed: weights, batch order, dropout and deformations
    train_s: float  # seconds from its first step to its last (TrainResult.train_time_s)
    test_acc: float  # fraction of the test images it classifies right, scored once after training


@dataclass(frozen=True)
class SpeedrunResult:
    recipe: Recipe
    target: float  # the test accuracy in percent the mean over the runs must reach
    device: str  # where it ran, e.g. "cpu" or "cuda:0"
    runs: tuple[SpeedrunRun, ...]  # in seed order; fewer than asked when interrupted
    interrupted: bool = False  # stopped by Ctrl-C: the runs finished before it, no verdict

    @property
    def mean_acc(self) -> float:
        return statistics.fmean(run.test_acc for run in self.runs)

    @property
    def std_acc(self) -> float | None:
        """The sample standard deviation over the runs; None for a single run."""
        return statistics.stdev(run.test_acc for run in self.runs) if len(self.runs) > 1 else None

    @property
    def median_train_s(self) -> float:
        return statistics.median(run.train_s for run in self.runs)

    @property
    def min_train_s(self) -> float:
        return min(run.train_s for run in self.runs)

    @property
    def max_train_s(self) -> float:
        return max(run.train_s for run in self.runs)

    @property
    def reached(self) -> bool:
        # In percent, rounded well below a test image's 0.01 point: a mean of 98% exactly
        # reaches 98 whatever the last bit of the float sum.
        return round(self.mean_acc * 100, 6) >= self.target

    def provenance(self, *, search: str, selection: str) -> Provenance:
        """Where its recipe came from (``search``, ``selection``) and what these runs gave, here, today."""
        return Provenance(
            search=search,
            selection=selection,
            machine=device_name(torch.device(self.device)),
            cores=os.cpu_count() or 0,
            date=datetime.date.today().isoformat(),
            mnist_bench=__version__,
            torch=torch.__version__,
            mean_acc=self.mean_acc,
            median_train_s=self.median_train_s,
            runs=len(self.runs),
        )

    def to_dict(self, *, wall_s: float, wall_from: str) -> dict[str, Any]:
        """What ``speedrun --json`` writes: accuracies as fractions (as checkpoints store them),
        the target in percent (as ``--target`` takes it), the machine and versions beside them."""
        return {
            "target": self.target,
            "recipe": self.recipe.to_dict(),
            "device": self.device,
            "runs": [{"seed": r.seed, "train_s": r.train_s, "test_acc": r.test_acc} for r in self.runs],
            "mean_acc": self.mean_acc,
            "std_acc": self.std_acc,
            "median_train_s": self.median_train_s,
            "min_train_s": self.min_train_s,
            "max_train_s": self.max_train_s,
            "reached": self.reached,
            "wall_s": wall_s,
            "wall_from": wall_from,  # "process start", or "command start" where the process's is unknown
            "environment": environment_of(self.device),
        }


def environment_of(device: str) -> dict[str, Any]:
    """The device, its name, the CPU count and the versions (mnist-bench, torch, CUDA, Python)."""
    return {"mnist_bench": __version__, **environment(torch.device(device))}


def run_speedrun(
    recipe: Recipe,
    data: DeviceData,
    seeds: list[int],
    *,
    target: float,
    runtime: Runtime,
    stop: StopFlag | None = None,
    on_run: Callable[[SpeedrunRun], None] | None = None,
) -> SpeedrunResult:
    """Train ``recipe`` once per seed on ``data.x_train`` and score each run on ``data.x_eval``.

    ``stop``, once set (Ctrl-C), ends the run in progress at its next batch: the result then
    holds the runs finished before it and says it was interrupted. ``on_run`` hears each
    run as it finishes.
    """
    runs: list[SpeedrunRun] = []
    try:
        for seed in seeds:
            result = train(replace(recipe.config, seed=seed), data, score_epochs=False, stop=stop, runtime=runtime)
            if result.diverged:
                raise MnistBenchError(f"recipe {recipe.name} with seed {seed} diverged: {result.diverged}")
            run = SpeedrunRun(seed, result.train_time_s, accuracy(result.model, data.x_eval, data.y_eval))
            runs.append(run)
            if on_run is not None:
                on_run(run)
    except KeyboardInterrupt:
        return SpeedrunResult(recipe, target, str(data.device), tuple(runs), interrupted=True)
    return SpeedrunResult(recipe, target, str(data.device), tuple(runs))


def process_age_s(stat: Path = Path("/proc/self/stat")) -> float | None:
    """Seconds since this process started, where Linux tells it (``/proc/self/stat``'s start
    time, in clock ticks since boot, against the boot clock); None elsewhere."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command's name, which may hold spaces
        ticks = int(fields[19])  # field 22, starttime; fields[0] is field 3
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):  # no /proc, or no CLOCK_BOOTTIME (not Linux)
        return None
    return age if age >= 0 else None


@dataclass(frozen=True)
class Stopwatch:
    """The whole command's wall time: from the process's start where known (the interpreter
    and imports included), else from when the stopwatch was made (the command's start)."""

    started: float  # time.monotonic() at the start it counts from
    since: str  # "process start" or "command start"

    @classmethod
    def start(cls) -> Stopwatch:
        return cls.after(process_age_s())

    @classmethod
    def after(cls, age: float | None) -> Stopwatch:
        """Counting from ``age`` seconds ago (the process's age), or from now where it is None."""
        now = time.monotonic()
        return cls(now - age, "process start") if age is not None else cls(now, "command start")

    def seconds(self) -> float:
        return time.monotonic() - self.started
