"""Storages: each queued trial goes to exactly one of several processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mnist_bench.errors import MnistBenchError
from mnist_bench.storage.rdb import open_storage

QUEUED = 200
PROCESSES = 4


def take_queued(url: str, study_name: str, start: mp.synchronize.Event, out: Path) -> None:  # runs in a child
    """Take queued trials until none is left, telling each with a trivial objective.

    Writes the numbers it told, one a line. A second tell of one trial raises here
    ("Cannot tell a COMPLETE trial"), and the process exits non-zero.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    told: list[int] = []
    start.wait()
    while True:
        trial = study.ask()
        # The queue ran dry: a fresh trial, not a queued one.
        if "fixed_params" not in storage.get_trial(trial._trial_id).system_attrs:
            study.tell(trial, state=TrialState.FAIL)
            break
        study.tell(trial, float(trial.suggest_int("i", 0, QUEUED - 1)))
        told.append(trial.number)
    out.write_text("".join(f"{n}\n" for n in told))


def stress(url: str, study_name: str, tmp_path: Path) -> None:
    study = optuna.create_study(study_name=study_name, storage=open_storage(url))
    for i in range(QUEUED):
        study.enqueue_trial({"i": i}, skip_if_exists=False)
    context = mp.get_context("spawn")
    start = context.Event()
    outs = [tmp_path / f"told-{k}.txt" for k in range(PROCESSES)]
    processes = [context.Process(target=take_queued, args=(url, study_name, start, out)) for out in outs]
    for process in processes:
        process.start()
    time.sleep(2)  # every process has loaded the study: they start at once, for the most contention
    start.set()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * PROCESSES  # no process died of another's trial

    told = [int(n) for out in outs for n in out.read_text().split()]
    assert len(told) == len(set(told)) == QUEUED  # every queued trial told exactly once
    study = optuna.load_study(study_name=study_name, storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["i"] for t in complete) == list(range(QUEUED))  # none lost, none twice
    assert all(t.value == t.params["i"] for t in complete)
    assert not study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))
    # The only failures are the asks that found the queue dry, one a process at most.
    assert all(not t.params for t in study.get_trials(states=(TrialState.FAIL,)))


def test_each_queued_trial_goes_to_one_process_on_sqlite(tmp_path: Path) -> None:
    stress(f"sqlite:///{tmp_path / 'queue.db'}", "queue", tmp_path)


def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path: Path) -> None:
    """The mechanism: while the storage is in a transaction, no other writer can begin one."""
    path = tmp_path / "lock.db"
    storage = open_storage(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    with storage.engine.connect() as first:
        first.begin()  # a deferred BEGIN would take no lock until its first write: too late
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free again once that transaction ended
    other.execute("ROLLBACK")
    other.close()


def test_bad_storage_urls_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(MnistBenchError, match="is not a URL"):
        open_storage("studies.db")
    with pytest.raises(MnistBenchError, match="no study storage at"):
        open_storage(f"sqlite:///{tmp_path / 'absent.db'}", must_exist=True)


def test_a_heartbeat_during_an_outage_is_missed_not_fatal(tmp_path: Path) -> None:
    """Optuna beats from a thread of its own: a beat that raised killed it (a traceback on
    stderr, no more beats, the trial later retried as a crashed one). A missed beat is
    only missed, and the next one, with the database back, lands."""
    path = tmp_path / "beat.db"
    storage = open_storage(f"sqlite:///{path}", heartbeat_s=1)
    study = optuna.create_study(study_name="beat", storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    storage.engine.dispose()  # the next beat needs a new connection: the database is gone
    path.rename(tmp_path / "away.db")
    path.mkdir()  # a folder where the file was: "unable to open database file"
    storage.record_heartbeat(trial._trial_id)  # raised before
    path.rmdir()
    (tmp_path / "away.db").rename(path)
    storage.engine.dispose()
    storage.record_heartbeat(trial._trial_id)  # back: it lands, and the trial is not stale
    assert storage._get_stale_trial_ids(study._study_id) == []
