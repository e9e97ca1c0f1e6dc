"""Speedruns: how long a fixed recipe takes to reach a test accuracy on this machine.

airbench's protocol: a fixed recipe (``recipe``: a config, its precision, the accuracy it
is meant to reach, where it came from), trained from fresh weights once per seed, each
run timed from its first step to its last, the test set touched once, after; the target
is met by the mean accuracy over the runs, not the best run (``run``). The recipes that
ship live in ``recipes/NAME.json`` (package data).

May import the root modules and ``training``; never ``search``, ``storage``, Optuna or
pandas: ``mnist-bench speedrun`` starts fast because nothing here pulls them in.
"""

from mnist_bench.speedrun.recipe import (
    DEVICE_KINDS,
    TARGETS,
    Provenance,
    Recipe,
    find_recipe,
    parse_target,
    recipe_for,
    shipped_recipes,
)
from mnist_bench.speedrun.run import SpeedrunResult, SpeedrunRun, Stopwatch, run_speedrun

__all__ = [
    "DEVICE_KINDS",
    "TARGETS",
    "Provenance",
    "Recipe",
    "SpeedrunResult",
    "SpeedrunRun",
    "Stopwatch",
    "find_recipe",
    "parse_target",
    "recipe_for",
    "run_speedrun",
    "shipped_recipes",
]
