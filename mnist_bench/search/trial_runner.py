"""Trials asked for, trained in lanes and told: one pass of the search loop, for any K.

``TrialRunner`` gives ``training.lanes.run_in_flight`` what starts a trial (ask, prepare,
a training to build in two phases), what its lane measures once it has trained (its
latency) and what judges it after each chunk of its steps (report, prune, tell): an
epoch, or with ``--reports-per-epoch N`` an N-th of one. So one trial at a time is the
K = 1 case of K side by side, with one schedule: each chunk is reported and judged, and
the trial told, before the next trial is asked for. With the
same seed the same trials start, stop and are told in the same order.

A single-objective trial is judged by the study's Optuna pruner, through ``trial.report``.
Optuna takes no reports with several objectives, so there the runner judges at the rungs of
the pruner's ``multi_objective`` (``moasha``): the trial's objective values at the report
(``objectives.report_values``) are stored on it (``records.record_rung``), ranked against
those every trial stored at the same rung, this runner's, other workers' and earlier runs',
and the trial stops unless it ranks in the top third.

A storage that stops answering is the storage's failure, not the trial's: the trial that
met it is failed with the reason ``lost the storage: ...`` where the storage answers again
at once, and leaves its place to another (it is ``lost``, never counted among this call's
trials). Where it does not, the runner is ``down``: it starts no trial, gives up those in
flight (kept to be failed once the storage is back, ``untold``) and lets the pass end; the
loop (``loop.run_trials``) waits for the storage as ``--storage-retry`` says.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.data import DeviceData
from mnist_bench.errors import one_line
from mnist_bench.interrupt import StopFlag
from mnist_bench.search.moasha import judge
from mnist_bench.search.objectives import objective_spec, report_values
from mnist_bench.search.pruners import pruner_spec
from mnist_bench.search.records import record_reason, record_rung, rung_values
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import (
    SearchSettings,
    SurplusTrial,
    TrialEpoch,
    elsewhere_notice,
    finished_elsewhere,
    prepare_trial,
    trial_outcome,
)
from mnist_bench.storage.heartbeats import TrialHeartbeats
from mnist_bench.storage.rdb import STORAGE_ERRORS
from mnist_bench.storage.trial_states import n_underway
from mnist_bench.training.lanes import MakeTraining, Slot, training_build
from mnist_bench.training.trainer import Training


def storage_failure(exc: BaseException) -> BaseException | None:
    """The lost-connection error behind ``exc``, if any: the deepest, the driver's own words.

    Optuna may raise something else while handling it (an UnboundLocalError from its
    trial bookkeeping, seen with Optuna 5.0), or wrap it in a StorageInternalError that
    blames "invalid data in the commit", so the whole chain is searched.
    """
    found = None
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, STORAGE_ERRORS):
            found = seen
        seen = seen.__cause__ or seen.__context__
    return found


def lost_notice(number: int) -> str:
    return f"trial {number} lost the storage while it trained and failed; another takes its place"


@dataclass
class TrialRunner:
    """What ``run_in_flight`` calls for a search; its counts outlive one pass.

    ``budget`` is how many trials this call may run: the trials it asks for count against
    it, except the ``lost`` ones, so failed trials cannot make a call loop forever.
    """

    settings: SearchSettings
    space: SearchSpace
    data: DeviceData
    study: optuna.Study
    beats: TrialHeartbeats
    budget: int
    stop: StopFlag | None = None
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None
    on_notice: Callable[[str], None] = lambda _line: None
    on_epoch: Callable[[TrialEpoch], None] | None = None
    asked: int = 0
    lost: set[int] = field(default_factory=set)  # trials that lost the storage: they do not count
    untold: list[tuple[optuna.Trial, str]] = field(default_factory=list)  # to fail, with why, once it is back
    down: BaseException | None = None  # what the storage raised, while it does not answer
    down_since: float = 0.0
    began: dict[int, float] = field(default_factory=dict)  # trial number -> when it was asked for
    ranked: dict[int, str] = field(default_factory=dict)  # trial number -> its rank where moasha stopped it
    # When --timeout runs out (time.monotonic()), counted from the runner's making; None: never.
    deadline: float | None = field(init=False)

    def __post_init__(self) -> None:
        timeout = self.settings.timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    @property
    def ran(self) -> int:
        return self.asked - len(self.lost)

    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def out_of_time(self) -> bool:
        """--timeout has run out: no trial starts after it (those in flight finish)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def close(self) -> None:
        """Run --timeout out now (``--stop-when-flat``'s rule held): no trial starts after
        this, those in flight finish."""
        self.deadline = time.monotonic()

    def start(self, _lane: int) -> tuple[optuna.Trial, MakeTraining] | None:
        """The next trial and how to build its training, or None: no more in this pass."""
        while self.down is None and self.ran < self.budget and not self.stopping() and not self.out_of_time():
            try:
                if n_underway(self.study) >= self.settings.trials:
                    return None  # full, counting other workers' running trials
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "heartbeat ... with Study.optimize": beats beats
                    trial = self.study.ask()
            except Exception as exc:
                self.storage_down(exc)
                return None
            self.asked += 1
            self.began[trial.number] = time.monotonic()
            self.beats.add(trial)
            try:
                config, runtime = prepare_trial(trial, self.settings, self.space, self.data)
            except SurplusTrial:
                self._told(trial, self.study.tell(trial, state=TrialState.FAIL))
                return None
            except Exception as exc:
                self._trouble(trial, exc)
                continue
            # Built by its lane, on the lane's thread and stream; if that fails (no memory
            # for its weights, say), the trial fails alone when judged.
            return trial, training_build(
                config, self.data, runtime=runtime, stop=self.stop,
                reports_per_epoch=self.settings.reports_per_epoch,
            )  # fmt: skip
        return None

    def trained(self, run: Training) -> None:
        """On the trial's lane, after the chunk that finished its training: a completed
        trial's latency, on its own stream, while the other lanes go on training (its
        judging then waits on no device)."""
        if run.diverged is None and not run.stopped:
            run.measure_latency()

    def judge(self, slot: Slot[optuna.Trial]) -> bool:
        """After each chunk of ``slot``'s training: report, prune, tell. True once it is finished."""
        if self.down is not None:  # the storage is gone: given up, failed once it is back
            self.lose(slot.tag, f"lost the storage: {one_line(self.down)}")
            return True
        try:
            return self._judged(slot)
        except Exception as exc:
            self._trouble(slot.tag, exc)
            return True

    def _judged(self, slot: Slot[optuna.Trial]) -> bool:
        trial, run = slot.tag, slot.training
        if slot.error is not None:
            self._fail(trial, slot.error)
            return True
        assert run is not None
        if self.on_epoch is not None and slot.val_acc is not None and not run.mid_epoch:
            wall = time.monotonic() - self.began[trial.number]
            self.on_epoch(TrialEpoch(trial.number, run.epoch, run.config.epochs, slot.val_acc, wall))
        if run.diverged is None and slot.val_acc is not None:
            if self.settings.multi_objective:
                self._judge_rung(trial, run, slot.val_acc)
            else:
                # The step is the report's number from 1 (after run.reports / reports_per_epoch
                # epochs): the epoch itself with one report an epoch; the unit of every
                # pruner's warm-up and rungs.
                trial.report(slot.val_acc, run.reports)
                if trial.should_prune():
                    run.stop_early()
        if not run.done:
            return False
        try:
            ranked = self.ranked.get(trial.number, "")
            outcome = trial_outcome(trial, run.result(), self.settings, self.data, ranked=ranked)
            frozen = self.study.tell(trial, outcome)
        except optuna.TrialPruned:
            frozen = self.study.tell(trial, state=TrialState.PRUNED)
        self._told(trial, frozen)
        return True

    def _judge_rung(self, trial: optuna.Trial, run: Training, val_acc: float) -> None:
        """A multi-objective trial at a rung of its pruner (moasha): its values there stored,
        then ranked against every trial's at the same rung; stopped unless it goes on."""
        rungs = pruner_spec(self.settings.pruner).multi_objective
        report = run.reports
        if rungs is None or not rungs.at(report):
            return
        values = report_values(self.settings.objectives, run, val_acc)
        if all(math.isfinite(v) for v in values):
            record_rung(trial, report, values)
            # Every trial's values at this rung, read back from the storage: this runner's,
            # other workers' and earlier runs'; any of another length (not this study's
            # objectives) or not finite left out. In trial-number order, which breaks the ranking's ties.
            at_rung = rung_values(self.study.get_trials(deepcopy=False), report)
            fit = {n: v for n, v in at_rung.items() if len(v) == len(values) and all(map(math.isfinite, v))}
            at_rung = fit | {trial.number: values}
            numbers = sorted(at_rung)
            directions = [objective_spec(name).direction for name in self.settings.objectives]
            verdict = judge([at_rung[n] for n in numbers], directions, numbers.index(trial.number), rungs)
            if verdict.goes_on:
                return
            why = f"rank {verdict.rank} of {verdict.n} at report {report}"
        else:  # as Optuna's pruners stop a trial that reports NaN
            why = f"objective values {values} at report {report}"
        run.stop_early()
        if run.stopped:  # not after its last report: a trial that has trained all its epochs completes
            self.ranked[trial.number] = why

    def abandon(self, slot: Slot[optuna.Trial], reason: str) -> None:
        """A trial in flight when the pass ends early (Ctrl-C, a device fault): failed with ``reason``."""
        if self.down is not None:
            self.lose(slot.tag, reason)
            return
        try:
            self._fail(slot.tag, reason)
        except Exception as exc:
            self._trouble(slot.tag, exc)

    def _told(self, trial: optuna.Trial, frozen: FrozenTrial) -> None:
        self.beats.remove(trial)
        self.began.pop(trial.number, None)
        self.ranked.pop(trial.number, None)
        if self.on_trial is not None:
            self.on_trial(self.study, frozen)

    def _fail(self, trial: optuna.Trial, reason: str) -> None:
        record_reason(trial, reason)
        self._told(trial, self.study.tell(trial, state=TrialState.FAIL))

    def _trouble(self, trial: optuna.Trial, exc: Exception) -> None:
        """A trial another worker finished first is one notice; one that lost the storage is
        lost; anything else propagates."""
        if finished_elsewhere(exc):
            self.beats.remove(trial)
            self.on_notice(elsewhere_notice(exc))
            return
        cause = storage_failure(exc)
        if cause is None:
            raise exc
        if self.lose(trial, f"lost the storage: {one_line(cause)}"):
            self.on_notice(lost_notice(trial.number))

    def lose(self, trial: optuna.Trial, reason: str) -> bool:
        """Fail ``trial`` with ``reason`` if the storage answers (True); else keep it for when it does.

        Either way it does not count: the storage failed, not the trial."""
        self.lost.add(trial.number)
        if self.down is None:
            try:
                self._fail(trial, reason)
                return True
            except Exception as exc:
                if finished_elsewhere(exc):
                    self.beats.remove(trial)
                    return False
                self.storage_down(exc)
        self.untold.append((trial, reason))
        return False

    def storage_down(self, exc: Exception) -> None:
        """Down from now on if ``exc`` is a lost storage; anything else propagates."""
        cause = storage_failure(exc)
        if cause is None or finished_elsewhere(exc):
            raise exc
        if self.down is None:
            self.down, self.down_since = cause, time.monotonic()

    def storage_back(self) -> bool:
        """Whether the storage answers again: the given-up trials are failed now (each a notice)."""
        try:
            n_underway(self.study)
            while self.untold:
                trial, reason = self.untold[0]
                try:
                    self._fail(trial, reason)
                except Exception as exc:
                    if not finished_elsewhere(exc):
                        raise
                    self.beats.remove(trial)
                self.untold.pop(0)
                self.on_notice(lost_notice(trial.number))
        except Exception as exc:
            if storage_failure(exc) is None:
                raise
            return False
        self.down = None
        return True
