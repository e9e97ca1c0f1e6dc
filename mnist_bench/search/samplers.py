"""How a search chooses the next trial's parameters: one registry entry per sampler.

Everything that names a sampler derives from ``SAMPLERS``: the settings' validation, the
study's record, the CLI's choices and help, and the docs. An unknown name is an error
naming the known ones, never a fallback to another sampler.

Adding a sampler: one ``SamplerSpec`` below, and its test (tests/test_samplers.py);
tests/test_choices.py drives every registered sampler through ``search`` and ``best``
without a line changed.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from mnist_bench.errors import registered
from mnist_bench.storage.optuna_private import PrunedAsFinished


@dataclass(frozen=True)
class SamplerSpec:
    """One ``--sampler``: its name, its line of help, and how its Optuna sampler is built."""

    name: str  # what --sampler and the study's record say
    help: str  # one line, for help and docs
    build: Callable[[int | None, int], optuna.samplers.BaseSampler]  # (seed, trials in flight) -> the sampler
    multi_objective: bool = True  # handles a study of several objectives (``--objective accuracy,latency``)
    # Modules it imports that Optuna does not install (GPSampler's scipy, which the package
    # requires; an optional extra's, for another): a search that names it where one is
    # missing is refused up front.
    needs: tuple[str, ...] = ()
    # Asks every parameter of the space in every trial (``space.sample_config``'s
    # ``whole_space``), for a sampler that models only the parameters all trials share.
    whole_space: bool = False

    def missing(self) -> list[str]:
        """The modules it needs that this environment lacks."""
        return [module for module in self.needs if importlib.util.find_spec(module) is None]


def _tpe(seed: int | None, parallel: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Constant liar: trials still in flight count as bad ones, so trials asked for
        # side by side spread out instead of repeating each other. (Off for one trial at
        # a time, so such studies repeat those made before it existed.)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, constant_liar=parallel > 1)


def _random(seed: int | None, parallel: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _nsga2(seed: int | None, parallel: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed)


class _GPFittingPruned(optuna.samplers.GPSampler):
    """Optuna's GPSampler, fitted to the pruned trials as well as the completed ones."""

    def sample_relative(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return super().sample_relative(PrunedAsFinished(study), trial, search_space)  # type: ignore[arg-type]


def _gp(seed: int | None, parallel: int) -> optuna.samplers.BaseSampler:
    # It models only the parameters every finished trial has, so its entry asks for all of
    # them in every trial (whole_space). Trials in flight (--parallel, --workers: chosen,
    # not yet scored) count as they are in Optuna 5.1, with no setting here: a proposal is
    # judged by the improvement it adds to theirs, their scores drawn jointly from the
    # Gaussian process (q-batch expected improvement), so trials side by side spread out.
    # Optuna's fits only completed trials, which under asha are a few in 50: on its own it
    # would draw at random all search long. So a pruned trial counts as finished at the
    # best accuracy it reported (storage.optuna_private.PrunedAsFinished), and its trials
    # are random until 10 have finished, pruned or not.
    return _GPFittingPruned(seed=seed, n_startup_trials=10)


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        SamplerSpec("tpe", "Tree-structured Parzen Estimator, after 10 random trials", _tpe),
        SamplerSpec("random", "independent uniform draws", _random),
        SamplerSpec("nsga2", "the NSGA-II genetic algorithm, for multi-objective searches", _nsga2),
        SamplerSpec(
            "gp",
            "a Gaussian process over every parameter of the space, fitted to pruned trials too, after 10 random trials",
            _gp,
            needs=("scipy",),
            whole_space=True,
        ),
    )
}


def sampler_spec(name: str) -> SamplerSpec:
    """The registered sampler ``name``; a ValueError naming the known ones otherwise."""
    return registered(SAMPLERS, "sampler", name)


def make_sampler(name: str, seed: int | None, *, parallel: int = 1) -> optuna.samplers.BaseSampler:
    """Sampler ``name`` seeded with ``seed``, for ``parallel`` trials in flight; a ValueError for an unknown name."""
    return sampler_spec(name).build(seed, parallel)
