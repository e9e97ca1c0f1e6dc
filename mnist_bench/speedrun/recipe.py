"""A speedrun's recipe: what is trained, the accuracy it is meant to reach, and where it came from.

A recipe is a JSON object (``Recipe.to_dict``): ``name``, ``target`` (percent, one of
``TARGETS``), ``device`` (the kind it is for, one of ``DEVICE_KINDS``), ``precision`` (a
name of ``config.PRECISIONS``), ``config`` (as ``TrainConfig.to_dict`` writes it, the
layout checkpoints store) and ``provenance`` (``Provenance``: the commands that found
it, the machine, date and versions, and the figures it gave when it shipped).

The recipes that ship with the package are ``recipes/NAME.json`` (package data, so an
installed package finds them from any folder), at most one for each target and device
kind: ``speedrun`` picks the one for its ``--target`` and device (``recipe_for``). A
user's own recipe is a file of the same form, given by its path (``find_recipe``); its
provenance may be left out.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from mnist_bench.config import TrainConfig, precision_spec
from mnist_bench.errors import UsageError
from mnist_bench.model import ModelConfig

TARGETS = (97.0, 98.0, 99.0, 99.5)  # the test accuracies, in percent, a speedrun aims at
DEVICE_KINDS = ("cpu", "cuda")  # what a recipe is for: the type of device it was found and measured on
DEFAULT_TARGET = 98.0
SHIPPED_DIR = "recipes"  # the package folder of the recipes that ship with it (package data)
# A recipe's config: TrainConfig.to_dict's keys (the model's fields beside the training's),
# of which these have no default.
CONFIG_KEYS = tuple([f.name for f in fields(TrainConfig) if f.name != "model"] + [f.name for f in fields(ModelConfig)])
CONFIG_REQUIRED = ("hidden", "optimizer", "lr")


def target_text(target: float) -> str:
    """98.0 -> "98", 99.5 -> "99.5": a target as people write it."""
    return f"{target:g}"


TARGET_CHOICES = ", ".join(target_text(target) for target in TARGETS)


def parse_target(text: str) -> float:
    """``--target``: "98", "98.0" or "99.5" -> the target in percent; a UsageError naming the targets otherwise."""
    try:
        target = float(text)
    except ValueError:
        target = math.nan
    if target not in TARGETS:
        raise UsageError(f"--target {text}: must be one of {TARGET_CHOICES} (percent)")
    return target


def _check_keys(values: Mapping[str, Any], known: Sequence[str], required: Sequence[str], where: str) -> None:
    for key in values:
        if key not in known:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    for key in required:
        if key not in values:
            raise UsageError(f"{where}: the key {key!r} is missing")


@dataclass(frozen=True)
class Provenance:
    """Where a recipe came from, and what it gave when it shipped."""

    search: str  # the search command that found it
    selection: str  # the command(s) that chose it among the search's trials (promote, best --retrain)
    machine: str  # the CPU model (or GPU) it was measured on
    cores: int  # that machine's CPU cores
    date: str  # when it was measured, YYYY-MM-DD
    mnist_bench: str  # the mnist-bench version that measured it
    torch: str  # the torch version that measured it
    mean_acc: float  # the mean test accuracy of its runs, a fraction (as checkpoints store accuracies)
    median_train_s: float  # the median training seconds of one run
    runs: int  # the runs (seeds 0, 1, ...) those figures are over

    @classmethod
    def from_dict(cls, values: object, *, source: str) -> Provenance:
        where = f"{source}: provenance"
        if not isinstance(values, Mapping):
            raise UsageError(f"{where} must be a JSON object, not {type(values).__name__}")
        names = [f.name for f in fields(cls)]
        _check_keys(values, names, names, where)
        kinds: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float)}
        for f in fields(cls):
            value = values[f.name]
            if isinstance(value, bool) or not isinstance(value, kinds[str(f.type)]):
                raise UsageError(
                    f"{where}: {f.name}={value!r} must be a JSON {'string' if f.type == 'str' else 'number'}"
                )
        return cls(**values)


@dataclass(frozen=True)
class Recipe:
    """A fixed configuration and the test accuracy its mean over seeded runs is meant to reach."""

    name: str  # what `speedrun --recipe NAME` says; a shipped recipe's file is recipes/NAME.json
    target: float  # the test accuracy in percent its mean over runs is meant to reach: one of TARGETS
    device: str  # the kind of device it is for, one of DEVICE_KINDS (speedrun picks by it)
    config: TrainConfig  # what each run trains (its seed replaced by the run's)
    precision: str = "fp32"  # a name of config.PRECISIONS
    provenance: Provenance | None = None  # where it came from; every shipped recipe has one

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name.strip()):
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        if isinstance(self.target, bool) or self.target not in TARGETS:
            raise ValueError(f"target={self.target!r} must be one of {TARGET_CHOICES} (percent)")
        object.__setattr__(self, "target", float(self.target))  # 98 in a file is 98.0 here and in --json
        if self.device not in DEVICE_KINDS:
            raise ValueError(f"device={self.device!r} must be one of {', '.join(DEVICE_KINDS)}")
        precision_spec(self.precision)

    def to_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": self.name,
            "target": self.target,
            "device": self.device,
            "precision": self.precision,
            "config": self.config.to_dict(),
        }
        if self.provenance is not None:
            values["provenance"] = asdict(self.provenance)
        return values

    @classmethod
    def from_dict(cls, values: object, *, source: str = "recipe") -> Recipe:
        """The inverse of ``to_dict``; a UsageError naming ``source`` and the key at fault."""
        if not isinstance(values, Mapping):
            raise UsageError(f"{source}: a recipe is a JSON object, not {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        _check_keys(values, known, ("name", "target", "device", "config"), source)
        config = values["config"]
        if not isinstance(config, Mapping):
            raise UsageError(f"{source}: config must be a JSON object, not {type(config).__name__}")
        _check_keys(config, CONFIG_KEYS, CONFIG_REQUIRED, f"{source}: config")
        try:
            train_config = TrainConfig.from_dict(config)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{source}: config: {exc}") from None
        provenance = values.get("provenance")
        try:
            return cls(
                name=values["name"],
                target=values["target"],
                device=values["device"],
                config=train_config,
                precision=values.get("precision", "fp32"),
                provenance=None if provenance is None else Provenance.from_dict(provenance, source=source),
            )
        except ValueError as exc:
            raise UsageError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: Path | Traversable) -> Recipe:
        """A recipe JSON file (a user's, or a shipped one)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"recipe file {path} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"recipe file {path} cannot be read: {exc}") from None
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(values, source=str(path))


def shipped_folder() -> Traversable:
    """Where the shipped recipes live: package data, found wherever the package is installed."""
    return importlib.resources.files("mnist_bench.speedrun") / SHIPPED_DIR


def shipped_recipes(folder: Traversable | None = None) -> dict[str, Recipe]:
    """Every recipe in ``folder`` (default: the shipped ones), by name, in name order.

    Each is ``NAME.json`` and names itself NAME, says where it came from, and is the only
    one for its target and device kind.
    """
    folder = shipped_folder() if folder is None else folder
    if not folder.is_dir():
        return {}
    recipes: dict[str, Recipe] = {}
    for item in sorted(folder.iterdir(), key=lambda item: item.name):
        if not item.name.endswith(".json"):
            continue
        recipe = Recipe.load(item)
        stem = item.name.removesuffix(".json")
        if recipe.name != stem:
            raise UsageError(f"{item}: name={recipe.name!r} must be its file's name, {stem!r}")
        if recipe.provenance is None:
            raise UsageError(f"{item}: the key 'provenance' is missing (every shipped recipe says where it came from)")
        for other in recipes.values():
            if (other.target, other.device) == (recipe.target, recipe.device):
                raise UsageError(
                    f"{item}: {other.name} is the recipe for {target_text(recipe.target)}% on {recipe.device} already"
                )
        recipes[stem] = recipe
    return recipes


def _shipped_list(recipes: Mapping[str, Recipe]) -> str:
    listed = ", ".join(f"{r.name} ({target_text(r.target)}% on {r.device})" for r in recipes.values())
    return listed or "none yet"


def find_recipe(spec: str, *, folder: Traversable | None = None) -> Recipe:
    """``--recipe``: a shipped recipe's name (no suffix), or the path of a recipe file (``NAME.json``)."""
    if Path(spec).suffix:
        return Recipe.load(Path(spec))
    shipped = shipped_recipes(folder)
    if spec not in shipped:
        raise UsageError(
            f"recipe {spec!r} is not a shipped recipe (shipped: {_shipped_list(shipped)}); "
            "pass a recipe file of your own by its path, ending in .json"
        )
    return shipped[spec]


def recipe_for(target: float, device_kind: str, *, folder: Traversable | None = None) -> Recipe:
    """The shipped recipe for ``target`` (percent) on a device of ``device_kind``; a UsageError
    naming the shipped ones, and one to run on purpose, where none ships for that pair."""
    shipped = shipped_recipes(folder)
    for recipe in shipped.values():
        if recipe.target == target and recipe.device == device_kind:
            return recipe
    # Another device's recipe for the same target first: a GPU user may run the CPU one on purpose.
    nearest = sorted(shipped.values(), key=lambda r: (r.target != target, abs(r.target - target), r.name))
    hint = f"run one on purpose with --recipe {nearest[0].name}, or" if nearest else "pass"
    raise UsageError(
        f"no recipe ships for {target_text(target)}% on {device_kind} (shipped: {_shipped_list(shipped)}); "
        f"{hint} a recipe file of your own with --recipe FILE.json"
    )
