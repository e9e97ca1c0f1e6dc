"""The search with K trials in flight side by side in one process (``--parallel K``).

Optuna's ask and tell around ``inflight``'s scheduler: trials are asked for, reported,
pruned and told in a fixed order, one epoch per round, so ``--seed`` repeats a study
trial for trial. ``search.run_search`` hands over to this loop for ``--parallel`` > 1; both
prepare and record trials through ``study``.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from functools import partial

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.interrupt import StopFlag
from mnist_bench.search.records import record_reason
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import (
    SearchOutcome,
    SearchSettings,
    SurplusTrial,
    TrialEpoch,
    elsewhere_notice,
    finished_elsewhere,
    prepare_trial,
    trial_outcome,
)
from mnist_bench.storage.heartbeats import StoppedWait, wait_for_stopped
from mnist_bench.storage.trial_states import n_finished, n_underway, state_counts
from mnist_bench.training.lanes import MakeTraining, Slot, run_in_flight
from mnist_bench.training.trainer import Training


def make_training(
    config: TrainConfig, data: DeviceData, stop: StopFlag | None, runtime: Runtime, stream: torch.cuda.Stream | None
) -> Training:
    return Training(config, data, stop=stop, runtime=runtime, stream=stream)


class _Heartbeats:
    """Heartbeats for trials run through ask/tell (study.optimize beats for its own trial)."""

    def __init__(self, study: optuna.Study, interval_s: float) -> None:
        self.storage = study._storage
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.interval_s = interval_s
        self.thread = threading.Thread(target=self._beat, name="heartbeats", daemon=True)

    def _beat(self) -> None:
        while not self.done.wait(self.interval_s):
            with self.lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
                except Exception:  # a storage hiccup: the next beat tries again (storage.RDBStorage)
                    pass

    def __enter__(self) -> _Heartbeats:
        if optuna.storages._heartbeat.is_heartbeat_enabled(self.storage):
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()

    def add(self, trial: optuna.Trial) -> None:
        with self.lock:
            self.trial_ids.add(trial._trial_id)
        if optuna.storages._heartbeat.is_heartbeat_enabled(self.storage):
            self.storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]

    def remove(self, trial: optuna.Trial) -> None:
        with self.lock:
            self.trial_ids.discard(trial._trial_id)


def run_search_in_flight(
    settings: SearchSettings,
    space: SearchSpace,
    data: DeviceData,
    *,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    study: optuna.Study,
    stop: StopFlag | None = None,
    on_notice: Callable[[str], None],
    on_epoch: Callable[[TrialEpoch], None] | None = None,
    on_wait: Callable[[StoppedWait], None] | None = None,
) -> SearchOutcome:
    """``run_search`` with ``settings.parallel`` trials in flight side by side (see ``inflight``).

    Trials are asked for, reported, pruned and told in a fixed order, one epoch per
    round, so ``--seed`` repeats the study trial for trial on the same machine.
    """
    started = time.monotonic()
    deadline = None if settings.timeout is None else started + settings.timeout
    announced: set[int] = set()  # trials whose stopped worker on_wait was told of
    budget = max(settings.trials - n_finished(study), 0)
    asked = 0
    began: dict[int, float] = {}  # trial number -> when it was asked for

    def told(trial: optuna.Trial, frozen: FrozenTrial) -> None:
        beats.remove(trial)
        began.pop(trial.number, None)
        if on_trial is not None:
            on_trial(study, frozen)

    def fail(trial: optuna.Trial, reason: str) -> None:
        record_reason(trial, reason)
        told(trial, study.tell(trial, state=TrialState.FAIL))

    def start(_lane: int) -> tuple[optuna.Trial, MakeTraining] | None:
        nonlocal asked
        while asked < budget and not (stop is not None and stop.is_set()):
            if settings.timeout is not None and time.monotonic() - started >= settings.timeout:
                return None
            if n_underway(study) >= settings.trials:
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "heartbeat ... with Study.optimize": _Heartbeats beats
                trial = study.ask()
            asked += 1
            began[trial.number] = time.monotonic()
            beats.add(trial)
            try:
                config = prepare_trial(trial, settings, space, data)
            except SurplusTrial:
                told(trial, study.tell(trial, state=TrialState.FAIL))
                return None
            except Exception as exc:
                elsewhere(trial, exc)
                continue
            # Built by its lane, on the lane's thread and stream; if that fails (no memory
            # for its weights, say), the trial fails alone when judged.
            return trial, partial(make_training, config, data, stop, settings.runtime)
        return None

    def elsewhere(trial: optuna.Trial, exc: Exception) -> None:
        """A trial another worker finished first: one notice; anything else propagates."""
        if not finished_elsewhere(exc):
            raise exc
        beats.remove(trial)
        on_notice(elsewhere_notice(exc))

    def judge(slot: Slot[optuna.Trial]) -> bool:
        try:
            return judged(slot)
        except Exception as exc:
            elsewhere(slot.tag, exc)
            return True

    def judged(slot: Slot[optuna.Trial]) -> bool:
        trial, run = slot.tag, slot.training
        if slot.error is not None:
            fail(trial, slot.error)
            return True
        assert run is not None
        if on_epoch is not None and slot.last_acc is not None:
            wall = time.monotonic() - began[trial.number]
            on_epoch(TrialEpoch(trial.number, run.epoch, run.config.epochs, slot.last_acc, wall))
        if run.diverged is None and slot.last_acc is not None and not settings.multi_objective:
            trial.report(slot.last_acc, run.epoch)
            if trial.should_prune():
                run.stop_early()
        if not run.done:
            return False
        try:
            frozen = study.tell(trial, trial_outcome(trial, run.result(), settings, data))
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        told(trial, frozen)
        return True

    def abandon(slot: Slot[optuna.Trial], reason: str) -> None:
        try:
            fail(slot.tag, reason)
        except Exception as exc:
            elsewhere(slot.tag, exc)

    def more_to_run() -> bool:
        """After the lanes ran dry: whether a stopped worker's trial freed a place (see ``stale``)."""
        if asked >= budget or (stop is not None and stop.is_set()):
            return False
        if deadline is not None and time.monotonic() >= deadline:
            return False
        return wait_for_stopped(
            study, settings.trials, on_wait=on_wait, stop=stop, deadline=deadline, announced=announced
        )

    with _Heartbeats(study, settings.heartbeat_s) as beats:
        ran = run_in_flight(settings.parallel, start, judge, abandon, device=data.device)
        while more_to_run():
            ran += run_in_flight(settings.parallel, start, judge, abandon, device=data.device)
    if stop is not None and stop.is_set():
        raise KeyboardInterrupt("stop requested")
    return SearchOutcome(
        study=study, ran=ran, finished=n_finished(study), target=settings.trials, counts=state_counts(study)
    )
