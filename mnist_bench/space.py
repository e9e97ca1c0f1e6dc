"""The search space: what a trial may choose, read from a TOML file under ``studies/``.

``sample_config`` is the only place where Optuna meets a config. The search calls it
with a live trial; retraining calls it with ``optuna.trial.FixedTrial(params)`` on a
stored trial's parameters, so the space is written once and the winner is rebuilt
by the very code that chose it.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mnist_bench.errors import MnistBenchError
from mnist_bench.model import MAX_DEPTH, ModelConfig
from mnist_bench.train import OPTIMIZERS, TrainConfig


class Suggester(Protocol):
    """The part of ``optuna.trial.Trial`` (and ``FixedTrial``) the space uses."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class SearchSpace:
    """Ranges are inclusive [low, high]; every key may be set in a studies/*.toml file."""

    depth: tuple[int, int] = (1, 4)  # number of hidden layers
    width: tuple[int, int] = (32, 1024)  # units per hidden layer, log-uniform, each layer its own
    optimizers: tuple[str, ...] = ("sgd", "adam")
    sgd_lr: tuple[float, float] = (1e-3, 0.3)  # log-uniform
    sgd_momentum: tuple[float, float] = (0.5, 0.99)  # uniform
    adam_lr: tuple[float, float] = (1e-4, 1e-2)  # log-uniform
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)

    def __post_init__(self) -> None:
        def check_range(name: str, lo: float, hi: float, *, floor: float, ceil: float = math.inf) -> None:
            if not floor <= lo <= hi <= ceil:
                raise MnistBenchError(
                    f"search space: {name} = [{lo}, {hi}] must satisfy {floor} <= low <= high <= {ceil}"
                )

        check_range("depth", *self.depth, floor=1, ceil=MAX_DEPTH)
        check_range("width", *self.width, floor=1)
        check_range("sgd_lr", *self.sgd_lr, floor=1e-12)
        check_range("sgd_momentum", *self.sgd_momentum, floor=0, ceil=0.999)
        check_range("adam_lr", *self.adam_lr, floor=1e-12)
        unknown = set(self.optimizers) - set(OPTIMIZERS)
        if not self.optimizers or unknown:
            raise MnistBenchError(
                f"search space: optimizers = {list(self.optimizers)} must be a non-empty subset of {list(OPTIMIZERS)}"
            )
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise MnistBenchError(f"search space: batch_sizes = {list(self.batch_sizes)} must be positive integers")

    def to_dict(self) -> dict[str, list[Any]]:
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "search space") -> SearchSpace:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise MnistBenchError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        fields = {}
        for key, value in values.items():
            if not isinstance(value, list | tuple):
                raise MnistBenchError(f"{source}: {key} must be a list, got {value!r}")
            fields[key] = tuple(value)
        for key in ("depth", "width", "sgd_lr", "sgd_momentum", "adam_lr"):
            if key in fields and len(fields[key]) != 2:
                raise MnistBenchError(f"{source}: {key} must be [low, high], got {list(fields[key])}")
        try:
            return cls(**fields)
        except TypeError as exc:  # e.g. a string where a number belongs
            raise MnistBenchError(f"{source}: {exc}") from None


def load_space(spec: str, studies_dir: Path) -> SearchSpace:
    """``spec`` is a path to a TOML file, or a name looked up as ``studies_dir/<name>.toml``.

    The name ``default`` falls back to the built-in defaults when no file is there,
    so the tool also works outside a checkout of this repository.
    """
    path = Path(spec)
    if not path.suffix:
        path = Path(studies_dir) / f"{spec}.toml"
    if not path.is_file():
        if spec == "default":
            return SearchSpace()
        raise MnistBenchError(f"search space {spec!r} not found (looked for {path})")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MnistBenchError(f"{path} is not valid TOML: {exc}") from None
    return SearchSpace.from_dict(values, source=str(path))


def sample_config(trial: Suggester, space: SearchSpace, *, epochs: int, seed: int) -> TrainConfig:
    """Ask ``trial`` for one configuration from ``space``.

    Learning-rate and momentum parameters carry the optimizer's name (``sgd_lr``,
    ``adam_lr``) because their ranges differ: one name per distribution keeps
    Optuna's samplers from mixing them.
    """
    depth = trial.suggest_int("n_layers", *space.depth)
    hidden = tuple(trial.suggest_int(f"width_{i}", *space.width, log=True) for i in range(depth))
    optimizer = trial.suggest_categorical("optimizer", list(space.optimizers))
    if optimizer == "sgd":
        lr = trial.suggest_float("sgd_lr", *space.sgd_lr, log=True)
        momentum = trial.suggest_float("sgd_momentum", *space.sgd_momentum)
    else:
        lr = trial.suggest_float("adam_lr", *space.adam_lr, log=True)
        momentum = 0.0
    batch_size = trial.suggest_categorical("batch_size", list(space.batch_sizes))
    return TrainConfig(
        model=ModelConfig(hidden=hidden),
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
    )
