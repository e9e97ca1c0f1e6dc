"""What a search optimizes: one registry entry per objective, its direction and its value.

Every search optimizes ``FIRST``, validation accuracy, and ranks, prunes and picks its
trials by it; any other objectives beside it make a multi-objective search with a Pareto
front, whose trials are pruned by all their objectives at once (``moasha``): so each
objective says how it is read off a training in progress, at a report, as well as off a
finished one. Everything that names an objective derives from ``OBJECTIVES``: the
settings' validation, the study's directions, a trial's values at its reports and at its
end, the CLI's help and the report's axis names. An unknown name is an error naming the
known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mnist_bench.errors import registered

if TYPE_CHECKING:
    from mnist_bench.training.trainer import Training, TrainResult


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective of ``--objective``: its name, direction, line of help, and its value at the
    end of a training and at a report in the middle of one."""

    name: str  # what --objective and the study's record say
    help: str  # one line, for help and docs
    label: str  # how figures name its axis
    direction: Literal["maximize", "minimize"]
    # (a finished training, the time it takes to classify one image in ms) -> the trial's value
    value: Callable[[TrainResult, float], float]
    # (a training at one of its reports, the validation accuracy it just reported) -> its value
    # there, what a multi-objective search prunes by (``moasha``). Called on the thread that
    # judges trials, between two chunks of the training's steps.
    at_report: Callable[[Training, float], float]


def _latency_so_far(run: Training, _val_acc: float) -> float:
    # Measured once, at the first report judged, and reused: the model's cost to run hardly
    # moves while it trains, and each measure is 60 forward passes. The run's latency is
    # measured again once it has trained (trial_runner.TrialRunner.trained): the trial's value.
    return run.latency_ms if run.latency_ms is not None else run.measure_latency()


def _projected_time(run: Training, _val_acc: float) -> float:
    # The seconds all its epochs would take at the rate so far: a trial pruned early cannot
    # look cheap for having trained little.
    planned = run.config.epochs * run.data.x_train.shape[0]
    return run.train_time * planned / run.samples if run.samples else float("inf")


def training_gflop(n_params: int, samples: float) -> float:
    """A training's multiply-adds, forward and backward, in GFLOP: 6 per weight per image
    (2 forward, 4 backward), the usual count for dense layers; biases and the loss are noise."""
    return 6.0 * n_params * samples / 1e9


def _planned_gflop(run: Training, _val_acc: float) -> float:
    # All its epochs' arithmetic, known before it trains: like time, never cheap for being cut short.
    return training_gflop(run.config.model.n_params, run.config.epochs * run.data.x_train.shape[0])


OBJECTIVES: dict[str, ObjectiveSpec] = {
    spec.name: spec
    for spec in (
        ObjectiveSpec(
            "accuracy",
            "the best validation accuracy over the epochs trained",
            "validation accuracy",
            "maximize",
            lambda result, _latency: result.best_acc,
            lambda _run, val_acc: val_acc,  # the accuracy just reported, as a single-objective pruner reads it
        ),
        ObjectiveSpec(
            "latency",
            "the time to classify one image, in ms, measured after training",
            "latency (ms)",
            "minimize",
            lambda _result, latency: latency,
            _latency_so_far,
        ),
        ObjectiveSpec(
            "params",
            "the parameter count",
            "parameters",
            "minimize",
            lambda result, _latency: float(result.config.model.n_params),
            lambda run, _val_acc: float(run.config.model.n_params),
        ),
        ObjectiveSpec(
            "time",
            "the training's seconds, first step to last, validation passes excluded (read off a clock: "
            "a seeded search repeats only nearly)",
            "training time (s)",
            "minimize",
            lambda result, _latency: result.train_time_s,
            _projected_time,
        ),
        ObjectiveSpec(
            "flops",
            "the training's arithmetic, 6 x parameters x images trained on: the cost time measures, but "
            "the same on every run, so a seeded search repeats",
            "training GFLOP",
            "minimize",
            lambda result, _latency: training_gflop(result.config.model.n_params, result.samples_seen),
            _planned_gflop,
        ),
    )
}


FIRST = "accuracy"  # every search's first objective: trials are ranked and picked by it (and pruned, with no other)


def objective_spec(name: str) -> ObjectiveSpec:
    """The registered objective ``name``; a ValueError naming the known ones otherwise."""
    return registered(OBJECTIVES, "objective", name)


def check_objectives(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a study's objectives: each registered, each once, ``FIRST`` first; a ValueError otherwise."""
    for name in names:
        objective_spec(name)
    if not names or names[0] != FIRST or len(set(names)) != len(names):
        others = ", ".join(name for name in OBJECTIVES if name != FIRST)
        raise ValueError(f"{FIRST} first, then any of {others}, each once")
    return tuple(names)


def parse_objectives(text: str) -> tuple[str, ...]:
    """``--objective``'s comma-separated names, checked as ``check_objectives`` does."""
    return check_objectives([part.strip() for part in text.split(",") if part.strip()])


def objective_values(names: Sequence[str], result: TrainResult, latency: float) -> tuple[float, ...]:
    """A finished trial's value of each objective in ``names``, in that order."""
    return tuple(objective_spec(name).value(result, latency) for name in names)


def report_values(names: Sequence[str], run: Training, val_acc: float) -> tuple[float, ...]:
    """A training's value of each objective in ``names`` at the report that just gave ``val_acc``."""
    return tuple(objective_spec(name).at_report(run, val_acc) for name in names)
