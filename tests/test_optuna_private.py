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


def _reported(study: optuna.Study, values: list[float], state: optuna.trial.TrialState) -> None:
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for step, value in enumerate(values, 1):
        trial.report(value, step)
    study.tell(trial, values[-1] if state == optuna.trial.TrialState.COMPLETE else None, state=state)


def test_pruned_trials_read_as_finished_at_the_best_they_reported(tmp_path: Path) -> None:
    pruned, complete, running = (optuna.trial.TrialState[s] for s in ("PRUNED", "COMPLETE", "RUNNING"))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    _reported(study, [0.5, 0.9, 0.8], complete)
    _reported(study, [0.3, 0.6, 0.4], pruned)
    study.tell(study.ask(), state=pruned)  # pruned before its first report: nothing to score it by
    study.ask()
    seen = optuna_private.PrunedAsFinished(study)
    assert [(t.number, t.state, t.value) for t in seen._get_trials(deepcopy=False, states=(complete,))] == [
        (0, complete, 0.8),
        (1, complete, 0.6),
    ]
    assert [t.state for t in seen._get_trials(deepcopy=False, states=(complete, running))] == [complete] * 2 + [running]
    assert [t.state for t in seen._get_trials(deepcopy=False, states=(pruned,))] == [pruned] * 2  # as stored
    assert len(seen._get_trials()) == 4 and seen.direction == study.direction  # the rest is the study's own
    assert (study.trials[1].state, study.trials[1].value) == (pruned, 0.4)  # stored as Optuna keeps it: the last report
    lowest = optuna.create_study(direction="minimize")
    _reported(lowest, [0.3, 0.1, 0.2], pruned)
    assert [t.value for t in optuna_private.PrunedAsFinished(lowest)._get_trials(states=(complete,))] == [0.1]


def test_gp_sampler_reads_its_finished_trials_through_get_trials() -> None:
    # What PrunedAsFinished answers: the name and keywords GPSampler.sample_relative calls.
    source = inspect.getsource(optuna.samplers.GPSampler.sample_relative)
    assert "study._get_trials(deepcopy=False, states=states" in source
    assert {"deepcopy", "states", "use_cache"} <= set(inspect.signature(optuna.Study._get_trials).parameters)
