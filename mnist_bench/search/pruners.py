"""When a search stops an unpromising trial early: one registry entry per pruner.

A pruner judges a trial by the validation accuracies it reports: ``reports_per_epoch`` an
epoch (``search --reports-per-epoch``, 1 by default), each after an equal share of the
epoch's steps. Its steps are those reports, counted from 1: report k comes after
k / reports_per_epoch epochs, so with one report an epoch the steps are the epochs, as they
were before trials could report more often. Each pruner is built with its warm-up and rungs
in these steps, the same share of training whatever the reports an epoch: the median's two
epochs of warm-up are 2 * reports_per_epoch steps, Hyperband's budgets run from one epoch
to ``--epochs`` epochs, and only ``asha``, whose first rung is a single report, judges a
trial before its first epoch ends.

Optuna prunes no study of several objectives (it refuses their reports), so a pruner that
judges those too says how in ``multi_objective``: the rungs at which the search loop itself
ranks the trials' objective vectors (``moasha``, multi-objective successive halving). Only
``asha`` does; a multi-objective search that names a pruner that cannot is refused, and one
that names none gets ``default_pruner``'s.

Everything that names a pruner derives from ``PRUNERS``: the settings' validation, the
study's record, the CLI's choices and help, and the docs. An unknown name is an error
naming the known ones, never a fallback to no pruning.

Adding a pruner: one ``PrunerSpec`` below, and its test (tests/test_pruners.py);
tests/test_choices.py drives every registered pruner through ``search`` and ``best``
without a line changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from mnist_bench.errors import registered
from mnist_bench.search.moasha import Rungs

NO_PRUNER = "none"  # Optuna's pruner of a multi-objective study, and a promotion's longer trials' pruner
DEFAULT_PRUNER = "median"  # a search's pruner where it names none
MULTI_OBJECTIVE_DEFAULT = "asha"  # ... and a multi-objective search's
ASHA_RUNGS = Rungs(min_resource=1, reduction_factor=3)  # asha's, for one objective and for several


@dataclass(frozen=True)
class PrunerSpec:
    """One ``--pruner``: its name, its line of help, and how its Optuna pruner is built."""

    name: str  # what --pruner and the study's record say
    help: str  # one line, for help and docs
    # (most epochs a trial trains, reports an epoch) -> the pruner, its steps counted in reports
    build: Callable[[int, int], optuna.pruners.BasePruner]
    # Stops trials early, from the accuracy each reports per epoch (with one objective; the
    # Optuna pruner of a multi-objective study is always NO_PRUNER's, which takes no reports).
    prunes: bool = True
    # How it judges a multi-objective study: the rungs where the search loop ranks the trials'
    # objective vectors (moasha); None: it cannot, and a search with several objectives that
    # names it is refused (one that prunes nothing may name it: it judges nothing).
    multi_objective: Rungs | None = None

    @property
    def takes_several_objectives(self) -> bool:
        return self.multi_objective is not None or not self.prunes


def _median(epochs: int, reports: int) -> optuna.pruners.BasePruner:
    # Let 5 trials finish first, and judge no trial before the end of its second epoch
    # (Optuna prunes once step >= n_warmup_steps; report 2 * reports ends epoch 2).
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2 * reports)


def _hyperband(epochs: int, reports: int) -> optuna.pruners.BasePruner:
    # Budgets from one epoch to all of them: with more reports an epoch, the same rungs
    # (and brackets) at the same epochs.
    return optuna.pruners.HyperbandPruner(min_resource=reports, max_resource=epochs * reports)


def _asha(epochs: int, reports: int) -> optuna.pruners.BasePruner:
    # Optuna's asynchronous successive halving: rungs at 1, 3, 9, ... reports, a trial
    # going on past a rung only in the top third of those that reached it.
    # With several objectives the same rungs, judged by moasha on the objective vectors.
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=ASHA_RUNGS.min_resource, reduction_factor=ASHA_RUNGS.reduction_factor
    )


def _none(epochs: int, reports: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


PRUNERS: dict[str, PrunerSpec] = {
    spec.name: spec
    for spec in (
        PrunerSpec(
            "median",
            "stops a trial below the median of earlier trials at the same report, from the end of epoch 2, "
            "once 5 have finished",
            _median,
        ),
        PrunerSpec("hyperband", "successive halving over budgets from 1 epoch up to --epochs", _hyperband),
        PrunerSpec(
            "asha",
            "asynchronous successive halving: at 1, 3, 9, ... reports (--reports-per-epoch), a trial goes on "
            "only in the top third of those that reached the same report; with several objectives, ranked by "
            "non-dominated sorting of their values, as multi-objective ASHA does",
            _asha,
            multi_objective=ASHA_RUNGS,
        ),
        PrunerSpec(NO_PRUNER, "every trial trains all its epochs", _none, prunes=False),
    )
}


def pruner_spec(name: str) -> PrunerSpec:
    """The registered pruner ``name``; a ValueError naming the known ones otherwise."""
    return registered(PRUNERS, "pruner", name)


def make_pruner(name: str, epochs: int, *, reports_per_epoch: int = 1) -> optuna.pruners.BasePruner:
    """Pruner ``name`` for trials of at most ``epochs`` epochs that report ``reports_per_epoch``
    times an epoch (its steps: the reports, from 1); a ValueError for an unknown name."""
    if reports_per_epoch < 1:
        raise ValueError(f"{reports_per_epoch=} must be at least 1")
    return pruner_spec(name).build(epochs, reports_per_epoch)


def default_pruner(objectives: int) -> str:
    """The pruner of a search of ``objectives`` objectives that names none."""
    return DEFAULT_PRUNER if objectives <= 1 else MULTI_OBJECTIVE_DEFAULT


def multi_objective_pruners() -> tuple[str, ...]:
    """The pruners a search of several objectives may name: those that judge such studies, and none."""
    return tuple(name for name, spec in PRUNERS.items() if spec.takes_several_objectives)
