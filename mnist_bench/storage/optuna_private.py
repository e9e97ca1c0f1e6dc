"""The one place mnist-bench reaches past Optuna's public API, each use for want of one.

Optuna (the range pinned in pyproject.toml) has no public way to do these; if a release
renames one, this module (and tests/test_optuna_private.py, which checks each name
resolves as used here) is the only place to change:

- ``Study._storage``: the storage a study was opened on. The heartbeat thread for
  trials run through ask and tell beats through it, and the stopped-worker wait reads
  its heartbeat settings; Optuna exposes a study's storage nowhere else.
- ``_CachedStorage._backend``: Optuna wraps an RDB storage in a cache; the RDB storage
  under it holds the heartbeat interval, the grace period and the database engine.
- ``Trial._trial_id``: the storage's id of a trial, which ``record_heartbeat`` takes
  (the public ``number`` is the trial's place in its study, not its id).
- ``optuna.storages._rdb.models``: the ORM classes of the trials and heartbeats tables,
  for the heartbeat ages Optuna reads only to fail stale trials and never returns.
- ``Study._get_trials``: how a sampler reads a study's trials (from Optuna 4.0 to 5.1,
  ``GPSampler.sample_relative`` reads its finished ones through it and nothing else).
  ``PrunedAsFinished`` answers it so that the Gaussian process fits pruned trials too;
  Optuna's fits only the completed ones, and has no setting for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import optuna
from optuna.storages._rdb import models  # the trials and heartbeats tables
from optuna.trial import FrozenTrial, TrialState

TrialModel = models.TrialModel
TrialHeartbeatModel = models.TrialHeartbeatModel


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage ``study`` reads and writes, as Optuna holds it (possibly cached)."""
    return study._storage


def backend(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """The storage under Optuna's cache (``_CachedStorage``), or ``storage`` itself."""
    return getattr(storage, "_backend", storage)


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of ``trial`` (what ``record_heartbeat`` and the heartbeats table use)."""
    return trial._trial_id


class PrunedAsFinished:
    """``study`` as a sampler that learns only from completed trials should see it: every
    pruned trial of a one-objective study that reported a value reads as completed, its
    value the best it reported (the highest for a study that maximizes, the lowest for one
    that minimizes). A search's reports are its objective's own figure, validation accuracy.

    A pruned trial is thus no better than what it showed before it was stopped, which is
    the pruner's verdict in the objective's own units: a sampler so fed learns where
    trials are stopped, as TPE does from its pruned trials, instead of waiting for trials
    that a pruner lets finish (one in ten, or fewer, under successive halving). Everything
    but ``_get_trials`` is the study's own: what a sampler writes goes to its storage.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Iterable[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        asked = None if states is None else tuple(states)
        if len(self._study.directions) > 1 or (asked is not None and TrialState.COMPLETE not in asked):
            return self._study._get_trials(deepcopy=deepcopy, states=asked, use_cache=use_cache)
        query = None if asked is None else (*asked, TrialState.PRUNED)
        trials = self._study._get_trials(deepcopy=deepcopy, states=query, use_cache=use_cache)
        best = max if self._study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        seen = []
        for t in trials:
            if t.state == TrialState.PRUNED and t.intermediate_values:
                seen.append(_completed(t, best(t.intermediate_values.values())))
            elif asked is None or t.state in asked:
                seen.append(t)
        return seen


def _completed(trial: FrozenTrial, value: float) -> FrozenTrial:
    """``trial`` as if it had completed with ``value`` (a copy; the stored trial is unchanged)."""
    return FrozenTrial(
        number=trial.number,
        state=TrialState.COMPLETE,
        value=value,
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=trial.user_attrs,
        system_attrs=trial.system_attrs,
        intermediate_values=trial.intermediate_values,
        trial_id=trial._trial_id,
    )
