"""The search space: what a trial may choose, read from a TOML file.

The spaces that ship with the package live in ``mnist_bench/search/spaces/NAME.toml`` (package
data, so a plain install finds them from any folder) and are named by NAME; a user's own
file is given by its path and may start from a shipped one with ``base = "NAME"``.

``sample_config`` is the only place where Optuna meets a config. The search calls it
with a live trial; retraining calls it with ``optuna.trial.FixedTrial(params)`` on a
stored trial's parameters, so the space is written once and the winner is rebuilt
by the very code that chose it.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import tomllib
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Protocol

from mnist_bench.augment import AUGMENTS, DEFAULT_DEFORM, Deform, augment_spec
from mnist_bench.config import PRECISIONS, TrainConfig
from mnist_bench.errors import UsageError
from mnist_bench.model import MAX_DEPTH, ModelConfig
from mnist_bench.optimizers import OPTIMIZERS, optimizer_spec
from mnist_bench.schedules import SCHEDULES

DEFORM_KEYS = tuple(f.name for f in dataclasses.fields(Deform))
SHIPPED_DIR = "spaces"  # the package folder of the spaces that ship with it (package data)
# Keys a space file may hold besides the ranges: the space it starts from, and one line about it.
FILE_KEYS = ("base", "description")


class Suggester(Protocol):
    """The part of ``optuna.trial.Trial`` (and ``FixedTrial``) the space uses."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


# Every optimizer's search ranges, as its registry entry declares them: fields of SearchSpace.
OPTIMIZER_RANGES = {field: rng for spec in OPTIMIZERS.values() for field, rng in spec.space_ranges().items()}


def _with_optimizer_ranges(cls: type) -> type:
    """Adds a field per optimizer range before ``dataclass`` reads the class, so an optimizer
    added to the registry is searchable, stored and checked with no line written here."""
    for field, default in OPTIMIZER_RANGES.items():
        cls.__annotations__[field] = "tuple[float, float]"
        setattr(cls, field, default)
    return cls


@dataclass(frozen=True)
@_with_optimizer_ranges
class SearchSpace:
    """Ranges are inclusive [low, high]; every key may be set in a space's TOML file."""

    depth: tuple[int, int] = (1, 4)  # number of hidden layers
    width: tuple[int, int] = (32, 1024)  # units per hidden layer, log-uniform, each layer its own
    # Whole hidden-layer shapes to choose among instead, e.g. "2500-2000-1500-1000-500"
    # (the tapered nets of the record's table); when set, depth and width are not searched.
    shapes: tuple[str, ...] = ()
    optimizers: tuple[str, ...] = ("sgd", "adam")
    # Each optimizer's ranges (``sgd_lr``, ``sgd_momentum``, ``adamw_weight_decay``...) are
    # fields too, added from its registry entry (``optimizers.OPTIMIZERS``) below.
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    # The extended space's regularizers. A range whose ends are equal, or a single
    # choice, is fixed rather than searched, so the default space asks none of them.
    dropout: tuple[float, float] = (0.0, 0.0)  # uniform, one rate for every hidden layer
    label_smoothing: tuple[float, float] = (0.0, 0.0)  # uniform
    schedules: tuple[str, ...] = ("constant",)  # names of schedules.SCHEDULES
    augments: tuple[str, ...] = ("none",)  # names of augment.AUGMENTS
    max_norms: tuple[float, ...] = (0.0,)  # cap on hidden units' weight norms; 0 means none
    # Deformation strengths (augment.Deform), sampled only for trials that augment.
    rotate_deg: tuple[float, float] = (DEFAULT_DEFORM.rotate_deg,) * 2  # type: ignore[assignment]
    scale: tuple[float, float] = (DEFAULT_DEFORM.scale,) * 2  # type: ignore[assignment]
    shear_deg: tuple[float, float] = (DEFAULT_DEFORM.shear_deg,) * 2  # type: ignore[assignment]
    shift_px: tuple[float, float] = (DEFAULT_DEFORM.shift_px,) * 2  # type: ignore[assignment]
    elastic_alpha_px: tuple[float, float] = (DEFAULT_DEFORM.elastic_alpha_px,) * 2  # type: ignore[assignment]
    elastic_sigma_px: tuple[float, float] = (DEFAULT_DEFORM.elastic_sigma_px,) * 2  # type: ignore[assignment]
    # A speed search's two: each trial's epochs, drawn from [low, high] (its schedule anneals
    # to its own end), and its precision, a name of config.PRECISIONS. (0, 0) and (): the
    # search's --epochs and --precision, the same for every trial.
    epochs: tuple[int, int] = (0, 0)
    precisions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def check_range(name: str, lo: float, hi: float, *, floor: float, ceil: float = math.inf) -> None:
            if not floor <= lo <= hi <= ceil:
                raise UsageError(f"search space: {name} = [{lo}, {hi}] must satisfy {floor} <= low <= high <= {ceil}")

        check_range("depth", *self.depth, floor=1, ceil=MAX_DEPTH)
        check_range("width", *self.width, floor=1)
        for shape in self.shapes:
            parse_shape(shape)
        for spec in OPTIMIZERS.values():
            check_range(spec.lr_field, *getattr(self, spec.lr_field), floor=1e-12)
            if spec.momentum_field is not None:
                check_range(spec.momentum_field, *getattr(self, spec.momentum_field), floor=0, ceil=0.999)
            if spec.weight_decay_field is not None:
                check_range(spec.weight_decay_field, *getattr(self, spec.weight_decay_field), floor=0)
                low, high = getattr(self, spec.weight_decay_field)
                if high > low and low <= 0:
                    raise UsageError(
                        f"search space: {spec.weight_decay_field} = [{low}, {high}] is searched log-uniform, "
                        "so low must be > 0"
                    )
        if self.searches_epochs:
            check_range("epochs", *self.epochs, floor=1)
        if set(self.precisions) - set(PRECISIONS):
            known = list(PRECISIONS)
            raise UsageError(f"search space: precisions = {list(self.precisions)} must be a subset of {known}")
        check_range("dropout", *self.dropout, floor=0, ceil=0.95)
        check_range("label_smoothing", *self.label_smoothing, floor=0, ceil=0.5)
        for name in DEFORM_KEYS:
            low, high = getattr(self, name)
            check_range(name, low, high, floor=0)
            for value in (low, high):
                try:
                    Deform(**{name: value})
                except ValueError as exc:
                    raise UsageError(f"search space: {exc}") from None
        for name, values, allowed in (("schedules", self.schedules, SCHEDULES), ("augments", self.augments, AUGMENTS)):
            if not values or set(values) - set(allowed):
                raise UsageError(f"search space: {name} = {list(values)} must be a non-empty subset of {list(allowed)}")
        if not self.max_norms or min(self.max_norms) < 0:
            raise UsageError(f"search space: max_norms = {list(self.max_norms)} must be numbers >= 0 (0: no cap)")
        unknown = set(self.optimizers) - set(OPTIMIZERS)
        if not self.optimizers or unknown:
            raise UsageError(
                f"search space: optimizers = {list(self.optimizers)} must be a non-empty subset of {list(OPTIMIZERS)}"
            )
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise UsageError(f"search space: batch_sizes = {list(self.batch_sizes)} must be positive integers")

    @property
    def searches_epochs(self) -> bool:
        """Each trial draws its own epochs (a speed search), rather than training the search's --epochs."""
        return self.epochs != (0, 0)

    @property
    def largest_hidden(self) -> tuple[int, ...]:
        """The hidden layers of the biggest net the space can sample (for memory planning)."""
        if self.shapes:
            return max((parse_shape(s) for s in self.shapes), key=lambda h: ModelConfig(h).n_params)
        return (self.width[1],) * self.depth[1]

    def to_dict(self) -> dict[str, list[Any]]:
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "search space") -> SearchSpace:
        _check_known_keys(values, source)
        fields = {}
        for key, value in values.items():
            if not isinstance(value, list | tuple):
                raise UsageError(f"{source}: {key} must be a list, got {value!r}")
            fields[key] = tuple(value)
        ranges = ("depth", "width", "epochs", *OPTIMIZER_RANGES, *DEFORM_KEYS)
        for key in (*ranges, "dropout", "label_smoothing"):
            if key in fields and len(fields[key]) != 2:
                raise UsageError(f"{source}: {key} must be [low, high], got {list(fields[key])}")
        try:
            return cls(**fields)
        except TypeError as exc:  # e.g. a string where a number belongs
            raise UsageError(f"{source}: {exc}") from None


def _check_known_keys(values: dict[str, Any], source: str, *, also: tuple[str, ...] = ()) -> None:
    names = {f.name for f in dataclasses.fields(SearchSpace)} | set(also)
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")


def parse_shape(shape: str) -> tuple[int, ...]:
    """``"2500-2000-500"`` -> ``(2500, 2000, 500)``, as ``train --layers`` reads it."""
    try:
        return ModelConfig.parse(str(shape)).hidden
    except ValueError as exc:
        raise UsageError(f"search space: shape {shape!r}: {exc}") from None


@dataclass(frozen=True)
class ShippedSpace:
    """A search space that comes with the package (``mnist_bench/search/spaces/NAME.toml``)."""

    name: str  # what --space and a file's base = "NAME" take
    description: str  # one line, the file's ``description`` key
    base: str | None  # the space it starts from, if any


def shipped_folder() -> Traversable:
    """Where the shipped spaces live: package data, found wherever the package is installed."""
    return importlib.resources.files("mnist_bench.search") / SHIPPED_DIR


def shipped_names() -> list[str]:
    return sorted(item.name.removesuffix(".toml") for item in shipped_folder().iterdir() if item.name.endswith(".toml"))


def shipped_spaces() -> tuple[ShippedSpace, ...]:
    """Every shipped space, by name, with its one-line description."""
    spaces = []
    for name in shipped_names():
        item = shipped_folder() / f"{name}.toml"
        values = _read_toml(item, str(item))
        description = values.get("description", "")
        base = values.get("base")
        spaces.append(ShippedSpace(name, str(description), base if isinstance(base, str) else None))
    return tuple(spaces)


def load_space(spec: str) -> SearchSpace:
    """``spec`` is the name of a shipped space (``mnist-bench spaces``) or a path to a TOML file.

    A name has no suffix; anything ending in ``.toml`` is a file of the user's, read from
    wherever it is. A file may start from another with ``base = "NAME"`` (a shipped space)
    or ``base = "PATH.toml"`` (relative to the file): it then holds only the keys it
    changes, and the search stores the resolved space, not the chain.
    """
    source = _locate(spec, None)
    return SearchSpace.from_dict(_space_values(spec, source, ()), source=str(source))


def _locate(spec: str, folder: Traversable | None) -> Traversable:
    """The file ``spec`` names; ``folder`` holds the file whose base it is, if any."""
    path = Path(spec)
    if not path.suffix:
        return shipped_folder() / f"{spec}.toml"
    if folder is not None and not path.is_absolute():
        return folder / spec
    return path


def _identity(item: Traversable) -> str:
    """What two spellings of one file have in common, for finding loops of bases."""
    return str(item.resolve()) if isinstance(item, Path) else str(item)


def _read_toml(item: Traversable, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(item.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{label} is not valid TOML: {exc}") from None


def _space_values(spec: str, item: Traversable, chain: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The TOML file's keys over those of its ``base`` chain (built-in defaults at the end).

    ``chain`` holds (identity, label) of the files that led here, the first one first.
    """
    label = str(item)
    if not item.is_file():
        where = f" (the base of {chain[-1][1]})" if chain else ""
        if not Path(spec).suffix:
            names = ", ".join(shipped_names())
            raise UsageError(
                f"search space {spec!r} is not a shipped space ({names}); pass a file of your own by its path, "
                f"ending in .toml{where}"
            )
        raise UsageError(f"search space file {label} not found{where}")
    identity = _identity(item)
    if identity in (seen for seen, _ in chain):
        loop = " -> ".join(seen_label for _, seen_label in (*chain, (identity, label)))
        raise UsageError(f"search space: base files loop: {loop}")
    values = _read_toml(item, label)
    base = values.pop("base", None)
    values.pop("description", None)  # describes this file alone: not inherited, not a range
    _check_known_keys(values, label, also=FILE_KEYS)  # here, so a base's typo is not blamed on its child
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise UsageError(f"{label}: base must be a space name or path, got {base!r}")
    folder = item.parent if isinstance(item, Path) else shipped_folder()
    return {**_space_values(base, _locate(base, folder), (*chain, (identity, label))), **values}


def sample_config(
    trial: Suggester, space: SearchSpace, *, epochs: int, seed: int, whole_space: bool = False
) -> TrainConfig:
    """Ask ``trial`` for one configuration from ``space``.

    Learning-rate, momentum and weight-decay parameters carry the optimizer's name
    (``sgd_lr``, ``adam_lr``: the fields its registry entry names) because their ranges
    differ: one name per distribution keeps Optuna's samplers from mixing them.

    By default a trial is asked only what its config uses: a depth-1 trial has no
    ``width_1``, an Adam trial no ``sgd_momentum``. ``whole_space`` asks every parameter
    the space can use, whatever the draws (the widths of its deepest net, each of its
    optimizers' fields, every deformation strength where one of its augmentations
    deforms), for a sampler that models only the parameters every trial has (Optuna's
    GPSampler); the config then uses those its ``n_layers``, ``optimizer`` and ``augment``
    choose and ignores the rest. A space that searches epochs (``epochs = [low, high]``)
    draws them here too, and ``epochs`` is then not used. The default mode rebuilds a trial asked either way from its
    stored parameters (``FixedTrial`` ignores those it is not asked for), since the used
    ones carry the same names and ranges in both: a study resumed with another sampler
    holds trials of both kinds.
    """
    if space.shapes:
        hidden = parse_shape(_choice(trial, "shape", space.shapes))
    else:
        depth = trial.suggest_int("n_layers", *space.depth)
        asked = space.depth[1] if whole_space else depth
        widths = [trial.suggest_int(f"width_{i}", *space.width, log=True) for i in range(asked)]
        hidden = tuple(widths[:depth])
    optimizer = trial.suggest_categorical("optimizer", list(space.optimizers))
    # In asking order: the chosen optimizer alone, or every optimizer of the space.
    rates = {name: _optimizer_rates(trial, space, name) for name in (space.optimizers if whole_space else [optimizer])}
    lr, momentum, weight_decay = rates[optimizer]
    batch_size = trial.suggest_categorical("batch_size", list(space.batch_sizes))
    max_norm = _choice(trial, "max_norm", space.max_norms)
    # Asked for in the order earlier versions asked, so a seeded study repeats them.
    dropout = _float(trial, "dropout", space.dropout)
    schedule = _choice(trial, "schedule", space.schedules)
    label_smoothing = _float(trial, "label_smoothing", space.label_smoothing)
    augment = _choice(trial, "augment", space.augments)
    deforms = augment_spec(augment).deforms
    deform = DEFAULT_DEFORM
    if deforms or (whole_space and any(augment_spec(name).deforms for name in space.augments)):
        strengths = Deform(**{name: _float(trial, name, getattr(space, name)) for name in DEFORM_KEYS})
        deform = strengths if deforms else DEFAULT_DEFORM
    if space.searches_epochs:  # asked last, so that the spaces before it repeat their seeded trials
        epochs = trial.suggest_int("epochs", *space.epochs) if space.epochs[1] > space.epochs[0] else space.epochs[0]
    return TrainConfig(
        model=ModelConfig(hidden=hidden, dropout=dropout),
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        weight_decay=weight_decay,
        schedule=schedule,
        label_smoothing=label_smoothing,
        augment=augment,
        max_norm=max_norm or None,
        deform=deform,
    )


def sample_precision(trial: Suggester, space: SearchSpace, default: str) -> str:
    """The precision a trial trains in: drawn where the space lists several, else the one it
    lists, else ``default`` (the search's --precision). Asked after ``sample_config``."""
    return _choice(trial, "precision", space.precisions) if space.precisions else default


def _optimizer_rates(trial: Suggester, space: SearchSpace, optimizer: str) -> tuple[float, float, float]:
    """Optimizer ``optimizer``'s (learning rate, momentum, weight decay), each asked where searched."""
    spec = optimizer_spec(optimizer)
    lr = trial.suggest_float(spec.lr_field, *getattr(space, spec.lr_field), log=True)
    momentum, weight_decay = 0.0, 0.0
    if spec.momentum_field is not None:
        momentum = trial.suggest_float(spec.momentum_field, *getattr(space, spec.momentum_field))
    if spec.weight_decay_field is not None:
        weight_decay = _float(trial, spec.weight_decay_field, getattr(space, spec.weight_decay_field), log=True)
    return lr, momentum, weight_decay


def _float(trial: Suggester, name: str, bounds: tuple[float, float], *, log: bool = False) -> float:
    """Suggested when the range is open, else its fixed value (and no parameter is stored)."""
    low, high = bounds
    return trial.suggest_float(name, low, high, log=log) if high > low else low


def _choice(trial: Suggester, name: str, choices: tuple[Any, ...]) -> Any:
    return trial.suggest_categorical(name, list(choices)) if len(choices) > 1 else choices[0]
