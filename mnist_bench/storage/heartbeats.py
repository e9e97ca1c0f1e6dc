"""Trials whose worker stopped: told from live workers' trials by their heartbeats, waited out, retried.

A worker killed mid-trial (SIGKILL, a lost machine) leaves its trial RUNNING. Optuna fails
such a trial once its last heartbeat is older than the grace period (``storage.GRACE_FACTOR``
heartbeats), and the storage's callback queues its parameters again. A search short of its
target only because of such trials would otherwise end at once ("3/4 finished, 1 running")
and leave them to a later run. ``wait_for_stopped`` waits out their grace period instead, so
the same run retries them. A trial whose heartbeat is fresh belongs to a live worker, in this
run or any other: it is left to that worker.

A trial whose worker died a moment ago looks as fresh as a live one until it misses a beat,
so a trial is only judged after ``missed_after`` seconds of silence.

``TrialHeartbeats`` is the other side: the beats of this process's own trials, asked for
and told through ask and tell (``study.optimize`` would beat for its one trial itself).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from mnist_bench.interrupt import StopFlag
from mnist_bench.storage.optuna_private import trial_id
from mnist_bench.storage.rdb import heartbeat_ages, rdb_storage
from mnist_bench.storage.trial_states import n_finished, n_underway

POLL_S = 1.0  # how often the storage is read while waiting


@dataclass(frozen=True)
class StoppedWait:
    """Running trials whose workers stopped beating, and the wait until the last is retried."""

    numbers: tuple[int, ...]  # trial numbers, ascending
    wait_s: int  # whole seconds, rounded up


class TrialHeartbeats:
    """A thread that beats every ``interval_s`` for the trials ``add``ed and not yet ``remove``d.

    Does nothing on a storage without heartbeats. A beat that meets a storage outage is
    only missed (``rdb.RDBStorage``): the next one tries again.
    """

    def __init__(self, study: optuna.Study, interval_s: float) -> None:
        storage = rdb_storage(study)
        self.storage = storage if storage is not None and storage.get_heartbeat_interval() is not None else None
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()  # trials are added and removed while the thread reads them
        self.done = threading.Event()
        self.interval_s = interval_s
        self.thread = threading.Thread(target=self._beat, name="heartbeats", daemon=True)

    def _beat(self) -> None:
        while not self.done.wait(self.interval_s):
            with self.lock:
                ids = list(self.trial_ids)
            for each in ids:
                self._record(each)

    def _record(self, storage_id: int) -> None:
        if self.storage is None:
            return
        try:
            self.storage.record_heartbeat(storage_id)
        except Exception:  # a storage hiccup that is not an outage: the next beat tries again
            pass

    def __enter__(self) -> TrialHeartbeats:
        if self.storage is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()

    def add(self, trial: optuna.Trial) -> None:
        """Beat for ``trial`` from now on, the first beat at once (a trial with none is never judged stale)."""
        with self.lock:
            self.trial_ids.add(trial_id(trial))
        self._record(trial_id(trial))

    def remove(self, trial: optuna.Trial) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id(trial))


def missed_after(interval_s: float) -> float:
    """Seconds without a heartbeat after which a trial's worker has missed one, not just not beaten yet."""
    return interval_s + max(1.0, interval_s / 2)  # slack for a slow write and SQLite's whole seconds


def wait_for_stopped(
    study: optuna.Study,
    target: int,
    *,
    on_wait: Callable[[StoppedWait], None] | None = None,
    stop: StopFlag | None = None,
    deadline: float | None = None,
    announced: set[int] | None = None,
) -> bool:
    """Wait while ``study`` is short of ``target`` finished trials only for trials whose worker stopped.

    Returns True once a place is free again (such a trial was failed and, within its
    retries, queued again: the caller runs it), False when there is nothing to wait for:
    the target is reached, a place is free already, or the running trials that would make
    up the target belong to live workers; and False when ``stop`` is set or ``deadline``
    (``time.monotonic()``) passes first. ``on_wait`` hears once per trial, across calls
    that share ``announced``, how long the wait for it is.
    """
    storage = rdb_storage(study)
    if storage is None or storage.heartbeat_interval is None:
        return False
    interval = storage.heartbeat_interval
    grace = storage.grace_period if storage.grace_period is not None else 2 * interval
    missed = missed_after(interval)
    told = announced if announced is not None else set()
    watched_from = time.monotonic()
    while True:
        underway = n_underway(study)  # fails the trials past their grace period, which queues them again
        finished = n_finished(study)
        if finished >= target:
            return False
        if underway < target:
            return True
        looked = time.monotonic()  # before the read: each age is at least this long since the watch began, less 1 s
        ages = heartbeat_ages(storage, storage.get_study_id_from_name(study.study_name))
        running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        stopped = {n: ages[n] for n in running if ages.get(n, 0.0) > missed}
        if finished + len(running) - len(stopped) >= target:
            # Live-looking trials make up the target. Once every trial has had time to miss a
            # beat (and SQLite's clock a second more), those still looking live are.
            if looked - watched_from > missed + 1:
                return False
        elif set(stopped) - told:
            wait = math.ceil(max(0.0, grace - min(stopped.values())) + 1)  # Optuna fails past the grace
            told.update(stopped)
            if on_wait is not None:
                on_wait(StoppedWait(tuple(sorted(stopped)), wait))
        if stop is not None and stop.is_set():
            return False
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
