"""Each private Optuna name ``storage.optuna_private`` uses resolves and does what it is used for.

A failure here means the installed Optuna moved one of them: change ``optuna_private``
(and the range pinned in pyproject.toml), nothing else.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import optuna
import sqlalchemy

from mnist_bench.storage import optuna_private
from mnist_bench.storage.rdb import heartbeat_ages, open_storage, rdb_storage


def study_on(tmp_path: Path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_s=5)
    return optuna.create_study(study_name="p", storage=storage)


def test_a_study_gives_its_storage_and_the_rdb_storage_under_the_cache(tmp_path: Path) -> None:
    study = study_on(tmp_path)
    storage = optuna_private.study_storage(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    under = optuna_private.backend(storage)
    assert isinstance(under, optuna.storages.RDBStorage) and under.get_heartbeat_interval() == 5
    assert rdb_storage(study) is under
    assert optuna_private.backend(under) is under  # an uncached storage is its own backend


def test_a_trials_id_is_the_one_its_storage_knows(tmp_path: Path) -> None:
    study = study_on(tmp_path)
    study.ask()
    trial = study.ask()
    storage = optuna_private.study_storage(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    assert optuna_private.trial_id(trial) == storage.get_trial_id_from_study_id_trial_number(study_id, 1)
    assert list(inspect.signature(optuna.storages.RDBStorage.record_heartbeat).parameters) == ["self", "trial_id"]


def test_the_heartbeat_tables_have_the_columns_read(tmp_path: Path) -> None:
    trials, beats = optuna_private.TrialModel, optuna_private.TrialHeartbeatModel
    assert {"trial_id", "number", "study_id", "state"} <= set(trials.__table__.columns.keys())
    assert {"trial_id", "heartbeat"} <= set(beats.__table__.columns.keys())
    assert (trials.__tablename__, beats.__tablename__) == ("trials", "trial_heartbeats")
    study = study_on(tmp_path)
    trial = study.ask()
    storage = rdb_storage(study)
    assert storage is not None
    storage.record_heartbeat(optuna_private.trial_id(trial))
    ages = heartbeat_ages(storage, storage.get_study_id_from_name("p"))
    assert list(ages) == [trial.number] and 0 <= ages[trial.number] < 60
    assert {"trials", "trial_heartbeats"} <= set(sqlalchemy.inspect(storage.engine).get_table_names())
