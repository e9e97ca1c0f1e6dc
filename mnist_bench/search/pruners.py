"""When a search stops an unpromising trial early: one registry entry per pruner.

A pruner judges a trial by the validation accuracy it reports after each epoch (steps
are epochs, counted from 1). Everything that names a pruner derives from ``PRUNERS``: the
settings' validation, the study's record, the CLI's choices and help, and the docs. An
unknown name is an error naming the known ones, never a fallback to no pruning.

Adding a pruner: one ``PrunerSpec`` below, and its test (tests/test_pruners.py);
tests/test_choices.py drives every registered pruner through ``search`` and ``best``
without a line changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from mnist_bench.errors import registered

NO_PRUNER = "none"  # what a multi-objective study and a promotion's longer trials get


@dataclass(frozen=True)
class PrunerSpec:
    """One ``--pruner``: its name, its line of help, and how its Optuna pruner is built."""

    name: str  # what --pruner and the study's record say
    help: str  # one line, for help and docs
    build: Callable[[int], optuna.pruners.BasePruner]  # (most epochs a trial trains) -> the pruner
    # Stops trials early, from the accuracy each reports per epoch: that needs a single
    # objective (Optuna neither takes reports nor prunes in a multi-objective study, which
    # gets NO_PRUNER instead).
    prunes: bool = True


def _median(epochs: int) -> optuna.pruners.BasePruner:
    # Let 5 trials finish first, and judge no trial on its first epoch alone (steps are
    # epochs counted from 1; Optuna prunes once step >= n_warmup_steps).
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


def _hyperband(epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)


def _none(epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


PRUNERS: dict[str, PrunerSpec] = {
    spec.name: spec
    for spec in (
        PrunerSpec(
            "median",
            "stops a trial below the median of earlier trials at the same epoch, from epoch 2, once 5 have finished",
            _median,
        ),
        PrunerSpec("hyperband", "successive halving over budgets from 1 epoch up to --epochs", _hyperband),
        PrunerSpec(NO_PRUNER, "every trial trains all its epochs", _none, prunes=False),
    )
}


def pruner_spec(name: str) -> PrunerSpec:
    """The registered pruner ``name``; a ValueError naming the known ones otherwise."""
    return registered(PRUNERS, "pruner", name)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """Pruner ``name`` for trials of at most ``epochs`` epochs; a ValueError for an unknown name."""
    return pruner_spec(name).build(epochs)
