"""A study's settings and the bookkeeping of its trials.

The search loop (``loop.run_trials``, through ``trial_runner``) prepares a trial here (its
config, its training seed, its place among --trials) and records its outcome here
(attributes, through ``records``; pruned or diverged; its objective values); and a study
resumes here only with its own random streams (``check_streams``). Nothing here runs a trial.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import optuna
from optuna.trial import TrialState

from mnist_bench import STREAMS_VERSION
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError, UsageError, one_line
from mnist_bench.search.objectives import check_objectives, objective_values
from mnist_bench.search.pruners import default_pruner, multi_objective_pruners, pruner_spec
from mnist_bench.search.records import (
    StudyRecord,
    TrialRecord,
    record_latency,
    record_reason,
    record_start,
    record_trial,
    seed_to_reuse,
)
from mnist_bench.search.samplers import sampler_spec
from mnist_bench.search.space import SearchSpace, sample_config, sample_precision
from mnist_bench.search.stopping import FlatStop
from mnist_bench.storage.rdb import HEARTBEAT_S
from mnist_bench.storage.trial_states import UNDERWAY
from mnist_bench.training.timing import latency_ms
from mnist_bench.training.trainer import TrainResult

DEFAULT_STUDY = "mnist-mlp"
SURPLUS = "surplus: another worker took the last place at the same moment; it did not train"
# Study names become folder names under studies/.
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class SearchSettings:
    study: str  # study name in the storage
    storage: str  # Optuna storage URL
    trials: int  # finished (complete or pruned) trials the study should hold in total
    epochs: int  # most epochs one trial may train
    # A name of pruners.PRUNERS; "" (the default): pruners.default_pruner, which judges
    # several objectives where there are several.
    pruner: str = ""
    # Validation reports an epoch of each trial, each after an equal share of its steps and
    # each judged by the pruner (its steps are these reports, from 1: see pruners.py).
    reports_per_epoch: int = 1
    sampler: str = "tpe"  # a name of samplers.SAMPLERS
    seed: int | None = None  # sampler seed, and root of every trial's training seed
    timeout: float | None = None  # seconds after which no new trial starts
    val_size: int = 5000  # training images held out for validation
    heartbeat_s: int = HEARTBEAT_S  # a running trial's heartbeat; 3 missed and it is retried
    storage_retry_s: float = 60.0  # how long to keep retrying a storage that stopped answering
    worker: int = 0  # index among workers sharing the study: offsets the sampler seed
    runtime: Runtime = field(default_factory=Runtime)  # precision and compilation of training steps
    objectives: tuple[str, ...] = ("accuracy",)  # names of objectives.OBJECTIVES, accuracy first; more: multi-objective
    parallel: int = 1  # trials in flight side by side in this process (trial_runner.py); 1: one at a time
    # Resume a study made with other random streams (STREAMS_VERSION): its seeded trials
    # then no longer repeat, and the leaderboard marks each trial's streams.
    mixed_versions: bool = False
    # --trials becomes a cap: no trial starts once the best has not moved beyond the
    # validation's noise for as long as ``stopping.flat_stop`` waits.
    stop_when_flat: bool = False

    def __post_init__(self) -> None:
        if not self.pruner:  # frozen: set once, here, before anything reads it
            object.__setattr__(self, "pruner", default_pruner(len(self.objectives)))
        check_study_name(self.study)
        if self.trials < 1:
            raise UsageError(f"--trials {self.trials}: must be at least 1")
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs}: must be at least 1")
        if self.reports_per_epoch < 1:
            raise UsageError(f"--reports-per-epoch {self.reports_per_epoch}: must be at least 1")
        objectives = ",".join(self.objectives)
        for option, value, check in (
            ("--pruner", self.pruner, lambda: pruner_spec(self.pruner)),
            ("--sampler", self.sampler, lambda: sampler_spec(self.sampler)),
            ("--objective", objectives, lambda: check_objectives(self.objectives)),
        ):
            try:
                check()
            except ValueError as exc:
                raise UsageError(f"{option} {value}: {exc}") from None
        sampler = sampler_spec(self.sampler)
        if self.multi_objective and not sampler.multi_objective:
            raise UsageError(f"--sampler {self.sampler}: takes one objective, not {objectives}")
        if self.multi_objective and not pruner_spec(self.pruner).takes_several_objectives:
            raise UsageError(
                f"--pruner {self.pruner}: judges one objective, not {objectives}; "
                f"with several use {' or '.join(multi_objective_pruners())}"
            )
        if sampler.missing():
            raise MnistBenchError(f"--sampler {self.sampler}: needs {', '.join(sampler.missing())}, not installed here")
        if self.timeout is not None and not self.timeout > 0:
            raise UsageError(f"--timeout {self.timeout}: must be a positive number of seconds")
        if self.parallel < 1:
            raise UsageError(f"--parallel {self.parallel}: must be at least 1")
        if self.heartbeat_s < 1:
            raise UsageError(f"--heartbeat {self.heartbeat_s}: must be at least 1 second")
        if self.stop_when_flat and self.multi_objective:
            raise UsageError(
                f"--stop-when-flat: watches the best accuracy of one objective, not {objectives} "
                "(a Pareto front may move while the best accuracy does not)"
            )

    @property
    def multi_objective(self) -> bool:
        """Optuna cannot prune such studies: the search loop judges their trials (moasha)."""
        return len(self.objectives) > 1

    @property
    def pruning(self) -> str:
        """Which pruner judges the trials, in words (the search's first line says it)."""
        if not pruner_spec(self.pruner).prunes:
            return "no pruning"
        if self.multi_objective:
            return f"pruned by {self.pruner} (multi-objective, on {', '.join(self.objectives)} at once)"
        return f"pruned by {self.pruner}"


def check_streams(study: StudyRecord, settings: SearchSettings) -> None:
    """Refuse to resume a study made with other random streams, unless ``settings.mixed_versions``.

    A study made before studies stored their streams has its creating version's (0.2.0's
    studies resume here: the streams are unchanged since). Its stored version is kept
    either way: it is the study's, and each trial records its own.
    """
    made = study.streams_version
    if made != STREAMS_VERSION and not settings.mixed_versions:
        raise MnistBenchError(
            f"study {settings.study!r} was made with the random streams of mnist-bench {made}, "
            f"this version's are {STREAMS_VERSION} (a seed gives other trials): resume it anyway "
            "with --mixed-versions, or start a new study with --study NAME"
        )


def check_study_name(name: str) -> None:
    if not _STUDY_NAME.fullmatch(name):
        raise UsageError(f"--study {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


def training_seed(study_seed: int | None, trial_number: int) -> int:
    """A trial's training seed: derived from (study seed, trial number), or fresh entropy.

    Either way it is stored with the trial, so any trial can be retrained exactly.
    """
    entropy = None if study_seed is None else [study_seed, trial_number]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def finished_elsewhere(exc: BaseException) -> bool:
    """Whether ``exc`` says the trial was already finished by someone else.

    Another worker that took this trial for a crashed one's (its heartbeats stopped while
    this process was stalled) marks it failed and queues a retry; the storage then refuses
    this process's writes to it. Optuna raises UpdateFinishedTrialError from the storage,
    or ValueError("Cannot tell a COMPLETE trial.") from ``tell``.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, optuna.exceptions.UpdateFinishedTrialError):
            return True
        if isinstance(seen, ValueError) and str(seen).startswith("Cannot tell a "):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def elsewhere_notice(exc: BaseException) -> str:
    return f"{one_line(exc)}: another worker finished that trial first; its result stays as stored, the search goes on"


class SurplusTrial(Exception):
    """A trial asked for after the study had --trials finished or under way (a race between workers)."""


def has_slot(study: optuna.Study, number: int, target: int) -> bool:
    ahead = sum(1 for t in study.get_trials(deepcopy=False, states=UNDERWAY) if t.number < number)
    return ahead < target


def prepare_trial(
    trial: optuna.Trial, settings: SearchSettings, space: SearchSpace, data: DeviceData
) -> tuple[TrainConfig, Runtime]:
    """A new trial's config and runtime (its precision, where the space searches it), with its
    training seed and device stored; SurplusTrial if the study is full."""
    if not has_slot(trial.study, trial.number, settings.trials):
        record_reason(trial, SURPLUS)
        raise SurplusTrial(SURPLUS)
    # A retry of a stale trial comes with that trial's attributes, its seed among them.
    seed = seed_to_reuse(trial)
    if seed is None:
        seed = training_seed(settings.seed, trial.number)
    record_start(trial, seed=seed, device=str(data.device))
    whole_space = sampler_spec(settings.sampler).whole_space
    config = sample_config(trial, space, epochs=settings.epochs, seed=seed, whole_space=whole_space)
    precision = sample_precision(trial, space, settings.runtime.precision)
    return config, replace(settings.runtime, precision=precision)


def trial_outcome(
    trial: optuna.Trial, result: TrainResult, settings: SearchSettings, data: DeviceData, *, ranked: str = ""
) -> float:
    """Record a finished training on its trial; its objective value(s), or TrialPruned.

    ``ranked``: where a multi-objective search's pruner stopped it, its rank at the rung
    (``rank 5 of 9 at report 3``); a single-objective one's says nothing more.
    """
    record_trial(trial, result)
    if result.diverged:
        record_reason(trial, f"diverged: {result.diverged}")
        raise optuna.TrialPruned(result.diverged)
    if result.stopped_early:
        by = f"{settings.pruner} (multi-objective)" if settings.multi_objective else f"{settings.pruner} pruner"
        record_reason(trial, f"pruned by {by} {stopped_where(result)}" + (f": {ranked}" if ranked else ""))
        raise optuna.TrialPruned()
    # Measured on the trial's lane and stream as it finished (trial_runner.TrialRunner.trained);
    # here, on the calling thread, only for a result that comes without it.
    latency = result.latency_ms if result.latency_ms is not None else latency_ms(result.model, data.device)
    record_latency(trial, latency)
    values = objective_values(settings.objectives, result, latency)
    return values[0] if len(values) == 1 else values  # type: ignore[return-value]


def stopped_where(result: TrainResult) -> str:
    """Where a pruned training stopped: after its last whole epoch, or part way into the next."""
    trained = result.epochs_trained
    if trained is None or trained == result.epochs_run:
        return f"after epoch {result.epochs_run}"
    return f"after {trained:.2f} epochs"


def best_accuracy(study: optuna.Study) -> float | None:
    """The best validation accuracy of the complete trials (any number of objectives)."""
    records = (TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    values = [r.accuracy for r in records if r.accuracy is not None]
    return max(values) if values else None


@dataclass(frozen=True)
class TrialEpoch:
    """One epoch of a trial in training, for progress on screen (long promotions)."""

    number: int  # the trial's number in its study
    epoch: int
    epochs: int  # the most it will run (pruning may stop it sooner)
    val_acc: float  # validation accuracy after this epoch
    wall_s: float  # wall time since the trial started, evaluation included

    @property
    def left_s(self) -> float:
        """Wall time the rest of its epochs need at the rate so far."""
        return self.wall_s / self.epoch * (self.epochs - self.epoch)


@dataclass(frozen=True)
class TrialCounts:
    study: optuna.Study
    ran: int  # trials started by this call
    finished: int  # finished trials the study holds now
    target: int  # settings.trials
    counts: Counter[str]  # trials per state, whole study
    flat: FlatStop | None = None  # why --stop-when-flat stopped it; None if its rule did not hold

    @property
    def best_value(self) -> float | None:
        return best_accuracy(self.study)
