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
"""

from __future__ import annotations

import optuna
from optuna.storages._rdb import models  # the trials and heartbeats tables

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
