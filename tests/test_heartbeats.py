"""Trials of stopped workers are waited out and retried; live workers' trials are left to them."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from mnist_bench.output.console import stopped_line
from mnist_bench.storage.heartbeats import StoppedWait, missed_after, wait_for_stopped
from mnist_bench.storage.rdb import heartbeat_ages, open_storage, rdb_storage


def study_with_running_trial(tmp_path: Path) -> tuple[optuna.Study, optuna.Trial]:
    """A study on SQLite with a 1 s heartbeat (3 s grace) and one RUNNING trial that has beaten once."""
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_s=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat ... with Study.optimize": this test beats
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    return study, trial


def test_a_stopped_workers_trial_is_waited_out_and_queued_again(tmp_path: Path) -> None:
    study, trial = study_with_running_trial(tmp_path)  # and nobody beats for it again
    waits: list[StoppedWait] = []
    assert wait_for_stopped(study, 1, on_wait=waits.append)
    assert len(waits) == 1 and waits[0].numbers == (trial.number,) and 0 <= waits[0].wait_s <= 3
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # failed, and its parameters queued again
    assert study.get_trials()[1].params == trial.params


def test_a_live_workers_trial_is_left_to_it(tmp_path: Path) -> None:
    study, trial = study_with_running_trial(tmp_path)
    storage = rdb_storage(study)
    assert storage is not None
    done = threading.Event()

    def beat() -> None:  # a live worker: a beat a second, as Optuna's own thread does
        while not done.wait(1.0):
            storage.record_heartbeat(trial._trial_id)

    beating = threading.Thread(target=beat)
    beating.start()
    try:
        waits: list[StoppedWait] = []
        assert not wait_for_stopped(study, 1, on_wait=waits.append)
        assert not waits
        assert study.get_trials()[0].state == TrialState.RUNNING
        assert heartbeat_ages(storage, study._study_id)[trial.number] <= missed_after(1)
    finally:
        done.set()
        beating.join()


def test_nothing_to_wait_for_returns_at_once(tmp_path: Path) -> None:
    study, trial = study_with_running_trial(tmp_path)
    assert wait_for_stopped(study, 2)  # a place is free already
    study.tell(trial, 0.5)
    assert not wait_for_stopped(study, 1)  # the target is reached
    assert not wait_for_stopped(optuna.create_study(), 1)  # no heartbeats: nothing to tell


def test_a_stop_request_ends_the_wait(tmp_path: Path) -> None:
    study, _ = study_with_running_trial(tmp_path)
    stop = threading.Event()
    stop.set()
    assert not wait_for_stopped(study, 1, stop=stop)
    assert study.get_trials()[0].state == TrialState.RUNNING


def test_stopped_line() -> None:
    assert stopped_line(StoppedWait((3,), 27)) == "Waiting 27 s for trial 3, whose worker stopped, to be retried."
    two = stopped_line(StoppedWait((0, 1), 9))
    assert two == "Waiting 9 s for trials 0 and 1, whose workers stopped, to be retried."
