"""The Optuna study: sampler, pruner, the objective around ``train`` and the run loop.

This is the only module (with ``space.sample_config``) that touches Optuna trials.
It returns plain data; the CLI renders it. Several processes, on one machine or many,
may run ``run_search`` on one study at once: they share it through its storage.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
import sqlalchemy.exc
import torch
from optuna.trial import FrozenTrial, TrialState

from mnist_bench import __version__
from mnist_bench.bench import latency_ms
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.interrupt import StopFlag
from mnist_bench.space import SearchSpace, sample_config
from mnist_bench.storage import HEARTBEAT_S, host_of, load_study, one_line, open_storage
from mnist_bench.train import TrainResult, train

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random", "nsga2")
# What a search can optimize: validation accuracy (up), and optionally, down, the time to
# classify one image (ms, measured after training) or the parameter count.
OBJECTIVES: dict[str, Literal["maximize", "minimize"]] = {
    "accuracy": "maximize",
    "latency": "minimize",
    "params": "minimize",
}
DEFAULT_STUDY = "mnist-mlp"
# Finished trials count towards --trials; FAIL ones do not (they are retried by design).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Trials that will count once done: a new trial runs only while fewer than --trials of
# these come before it, so concurrent workers stop at exactly --trials. (WAITING trials,
# queued parameters, are what the next ask picks up: they hold no place of their own.)
UNDERWAY = (*FINISHED, TrialState.RUNNING)
SURPLUS = "surplus: another worker took the last place at the same moment; it did not train"
# What a lost database connection raises, from SQLAlchemy or through Optuna.
STORAGE_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    optuna.exceptions.StorageInternalError,
)
# Study names become folder names under studies/.
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class SearchSettings:
    study: str  # study name in the storage
    storage: str  # Optuna storage URL
    trials: int  # finished (complete or pruned) trials the study should hold in total
    epochs: int  # most epochs one trial may train
    pruner: str = "median"  # one of PRUNERS
    sampler: str = "tpe"  # one of SAMPLERS
    seed: int | None = None  # sampler seed, and root of every trial's training seed
    timeout: float | None = None  # seconds after which no new trial starts
    val_size: int = 5000  # training images held out for validation
    heartbeat_s: int = HEARTBEAT_S  # a running trial's heartbeat; 3 missed and it is retried
    storage_retry_s: float = 60.0  # how long to keep retrying a storage that stopped answering
    worker: int = 0  # index among workers sharing the study: offsets the sampler seed
    runtime: Runtime = field(default_factory=Runtime)  # precision and compilation of training steps
    objectives: tuple[str, ...] = ("accuracy",)  # accuracy first; latency and/or params make it multi-objective
    parallel: int = 1  # trials in flight side by side in this process (inflight.py); 1: one at a time

    def __post_init__(self) -> None:
        check_study_name(self.study)
        if self.trials < 1:
            raise MnistBenchError(f"--trials {self.trials}: must be at least 1")
        if self.epochs < 1:
            raise MnistBenchError(f"--epochs {self.epochs}: must be at least 1")
        if self.pruner not in PRUNERS:
            raise MnistBenchError(f"--pruner {self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        if self.sampler not in SAMPLERS:
            raise MnistBenchError(f"--sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if self.timeout is not None and not self.timeout > 0:
            raise MnistBenchError(f"--timeout {self.timeout}: must be a positive number of seconds")
        if self.parallel < 1:
            raise MnistBenchError(f"--parallel {self.parallel}: must be at least 1")
        if self.heartbeat_s < 1:
            raise MnistBenchError(f"--heartbeat {self.heartbeat_s}: must be at least 1 second")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if (
            unknown
            or not self.objectives
            or self.objectives[0] != "accuracy"
            or len(set(self.objectives)) != len(self.objectives)
        ):
            raise MnistBenchError(
                f"--objective {','.join(self.objectives)}: accuracy first, then any of latency, params"
            )

    @property
    def multi_objective(self) -> bool:
        """Optuna cannot prune such studies: every trial then trains all its epochs."""
        return len(self.objectives) > 1


def check_study_name(name: str) -> None:
    if not _STUDY_NAME.fullmatch(name):
        raise MnistBenchError(f"--study {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")


def make_sampler(name: str, seed: int | None, *, parallel: int = 1) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Constant liar: trials still in flight count as bad ones, so trials asked for
        # side by side spread out instead of repeating each other. (Off for one trial at
        # a time, so such studies repeat those made before it existed.)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, constant_liar=parallel > 1)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "median":
        # Let 5 trials finish first, and judge no trial on its first epoch alone (steps are
        # epochs counted from 1; Optuna prunes once step >= n_warmup_steps).
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def training_seed(study_seed: int | None, trial_number: int) -> int:
    """A trial's training seed: derived from (study seed, trial number), or fresh entropy.

    Either way it is stored with the trial, so any trial can be retrained exactly.
    """
    entropy = None if study_seed is None else [study_seed, trial_number]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def open_study(settings: SearchSettings, space: SearchSpace, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or resume it if its space and validation split match."""
    study = optuna.create_study(
        study_name=settings.study,
        storage=storage,
        # Workers seeded alike would propose the very same parameters: offset each one.
        sampler=make_sampler(
            settings.sampler,
            None if settings.seed is None else settings.seed + settings.worker,
            parallel=settings.parallel,
        ),
        pruner=make_pruner("none" if settings.multi_objective else settings.pruner, settings.epochs),
        directions=[OBJECTIVES[o] for o in settings.objectives],
        load_if_exists=True,
    )
    stored_values = study.user_attrs.get("space")
    if stored_values is None:
        study.set_user_attr("space", space.to_dict())
        study.set_user_attr("val_size", settings.val_size)
        study.set_user_attr("objective", "best validation accuracy over the epochs trained")
        study.set_user_attr("objectives", list(settings.objectives))
        study.set_user_attr("mnist_bench_version", __version__)
        # The settings it was started with, for reports (a resume may change them).
        study.set_user_attr("sampler", settings.sampler)
        study.set_user_attr("pruner", settings.pruner)
        study.set_user_attr("epochs", settings.epochs)
        study.set_user_attr("seed", settings.seed)
        study.set_user_attr("torch", torch.__version__)
    else:
        # Compared as spaces, so a study from before a key existed still matches its defaults.
        differs = [
            name
            for name, same in (
                ("space", SearchSpace.from_dict(stored_values) == space),
                ("val_size", study.user_attrs.get("val_size") == settings.val_size),
                ("objective", study.user_attrs.get("objectives", ["accuracy"]) == list(settings.objectives)),
            )
            if not same
        ]
        if differs:
            raise MnistBenchError(
                f"study {settings.study!r} was run with another {' and '.join(differs)}; "
                "resume it with the same settings, or start a new study with --study NAME"
            )
    return study


def stored_space(study: optuna.Study) -> SearchSpace:
    values = study.user_attrs.get("space")
    return SearchSpace.from_dict(values) if values else SearchSpace()


def state_counts(study: optuna.Study) -> Counter[str]:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def n_underway(study: optuna.Study) -> int:
    """Finished trials plus running ones: what --trials will count once they are done.

    Trials of crashed workers that missed their heartbeats are failed (and queued
    again) first, so they do not hold a place for ever.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return len(study.get_trials(deepcopy=False, states=UNDERWAY))


def _record(trial: optuna.Trial, result: TrainResult) -> None:
    attrs: dict[str, Any] = {
        "epochs_run": result.epochs_run,
        "train_time_s": round(result.train_time_s, 4),
        "samples_per_s": round(result.samples_per_s, 1),
        "final_val_acc": result.final_acc,
        "best_val_acc": result.best_acc,
        "best_epoch": result.best_epoch,
        "val_acc": list(result.eval_acc),
        "train_loss": [x if math.isfinite(x) else None for x in result.train_loss],
        "n_params": result.config.model.n_params,
        "step": "graphed" if result.graphed else "eager",
    }
    if result.eager_reason is not None:
        attrs["eager_reason"] = result.eager_reason  # on CUDA: why this trial was not graphed
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def storage_failure(exc: BaseException) -> BaseException | None:
    """The lost-connection error behind ``exc``, if any.

    Optuna may raise something else while handling it (an UnboundLocalError from its
    trial bookkeeping, seen with Optuna 5.0), so the whole chain is searched.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, STORAGE_ERRORS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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


class TrialFailed(Exception):
    """A trial's training raised; the message is its one-line reason."""


class SurplusTrial(Exception):
    """A trial asked for after the study had --trials finished or under way (a race between workers)."""


def has_slot(study: optuna.Study, number: int, target: int) -> bool:
    ahead = sum(1 for t in study.get_trials(deepcopy=False, states=UNDERWAY) if t.number < number)
    return ahead < target


def prepare_trial(trial: optuna.Trial, settings: SearchSettings, space: SearchSpace, data: DeviceData) -> TrainConfig:
    """A new trial's config, with its training seed and device stored; SurplusTrial if the study is full."""
    if not has_slot(trial.study, trial.number, settings.trials):
        trial.set_user_attr("reason", SURPLUS)
        raise SurplusTrial(SURPLUS)
    # A retry of a stale trial comes with that trial's attributes, its seed among them.
    if "train_seed" in trial.user_attrs:
        seed = int(trial.user_attrs["train_seed"])
    else:
        seed = training_seed(settings.seed, trial.number)
        trial.set_user_attr("train_seed", seed)
    trial.set_user_attr("device", str(data.device))
    return sample_config(trial, space, epochs=settings.epochs, seed=seed)


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def trial_outcome(trial: optuna.Trial, result: TrainResult, settings: SearchSettings, data: DeviceData) -> float:
    """Record a finished training on its trial; its objective value(s), or TrialPruned."""
    _record(trial, result)
    if result.diverged:
        trial.set_user_attr("reason", f"diverged: {result.diverged}")
        raise optuna.TrialPruned(result.diverged)
    if result.stopped_early:
        trial.set_user_attr("reason", f"pruned by {settings.pruner} pruner after epoch {result.epochs_run}")
        raise optuna.TrialPruned()
    latency = latency_ms(result.model, data.device)
    trial.set_user_attr("latency_ms", latency)
    values = {"accuracy": result.best_acc, "latency": latency, "params": float(result.config.model.n_params)}
    if not settings.multi_objective:
        return result.best_acc
    return tuple(values[o] for o in settings.objectives)  # type: ignore[return-value]


def make_objective(
    settings: SearchSettings, space: SearchSpace, data: DeviceData, stop: StopFlag | None = None
) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        try:
            config = prepare_trial(trial, settings, space, data)
        except SurplusTrial:
            trial.study.stop()
            raise

        def on_epoch(epoch: int, acc: float) -> bool:
            if settings.multi_objective:  # Optuna supports neither report nor pruning here
                return False
            trial.report(acc, epoch)
            return trial.should_prune()

        failure = None
        try:
            result = train(config, data, on_epoch=on_epoch, stop=stop, runtime=settings.runtime)
        except KeyboardInterrupt:
            trial.set_user_attr("reason", "interrupted (SIGINT) during training")
            raise
        except Exception as exc:  # e.g. out of memory: this trial fails, the search goes on
            failure = _failure(exc)
        if failure is not None:
            # Raised afresh, outside the handler: the training's exception and its traceback
            # (whose frames hold the model and any graph) are gone now, not at the next full
            # garbage collection, so one out-of-memory trial does not make the next likelier.
            trial.set_user_attr("reason", failure)
            raise TrialFailed(failure)
        return trial_outcome(trial, result, settings, data)

    return objective


def best_accuracy(study: optuna.Study) -> float | None:
    """The best validation accuracy of the complete trials (any number of objectives)."""
    values = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    return max(values) if values else None


def pareto_numbers(study: optuna.Study) -> set[int]:
    """Trial numbers on the Pareto front of a multi-objective study (empty otherwise)."""
    return {t.number for t in study.best_trials} if len(study.directions) > 1 else set()


@dataclass(frozen=True)
class SearchOutcome:
    study: optuna.Study
    ran: int  # trials started by this call
    finished: int  # finished trials the study holds now
    target: int  # settings.trials
    counts: Counter[str]  # trials per state, whole study

    @property
    def best_value(self) -> float | None:
        return best_accuracy(self.study)


def run_search(
    settings: SearchSettings,
    space: SearchSpace,
    data: DeviceData,
    *,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    study: optuna.Study | None = None,
    stop: StopFlag | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Run trials until the study holds ``settings.trials`` finished ones.

    One call starts at most the number missing when it began, so trials that fail (and
    do not count) cannot make it loop forever; running it again tops the study up. A
    storage that stops answering is retried for ``settings.storage_retry_s`` seconds,
    then given up with a one-line error; trials stored before stay stored. A trial that
    another worker finished first is passed to ``on_notice`` as one line, and the search
    goes on.
    """
    notice = on_notice or (lambda _line: None)
    if study is None:
        study = open_study(settings, space, open_storage(settings.storage, heartbeat_s=settings.heartbeat_s))
    if settings.parallel > 1:
        from mnist_bench.search_inflight import run_search_in_flight  # noqa: PLC0415  (it builds on this module)

        return run_search_in_flight(settings, space, data, on_trial=on_trial, study=study, stop=stop, on_notice=notice)
    objective = make_objective(settings, space, data, stop)
    started = time.monotonic()
    budget = max(settings.trials - n_finished(study), 0)
    ran = 0
    outage_since: float | None = None

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran, outage_since
        ran += 1
        outage_since = None
        if on_trial is not None:
            on_trial(study, trial)
        if stop is not None and stop.is_set():
            study.stop()
        # Other workers' running trials will finish: asking for one more would be surplus.
        if n_underway(study) >= settings.trials:
            study.stop()

    while ran < budget and not (stop is not None and stop.is_set()):
        timeout = None if settings.timeout is None else settings.timeout - (time.monotonic() - started)
        if timeout is not None and timeout <= 0:
            break
        try:
            if n_underway(study) >= settings.trials:
                break
            study.optimize(
                objective, n_trials=budget - ran, timeout=timeout, catch=(Exception,), callbacks=[after_trial]
            )
            break
        except Exception as exc:
            if finished_elsewhere(exc):  # the trial ran here, and counts against this call's budget
                ran += 1
                notice(elsewhere_notice(exc))
                continue
            lost = storage_failure(exc)
            if lost is None:
                raise
            outage_since = outage_since or time.monotonic()
            if time.monotonic() - outage_since > settings.storage_retry_s:
                raise MnistBenchError(
                    f"lost the storage at {host_of(settings.storage)} for over {settings.storage_retry_s:.0f} s "
                    f"({one_line(lost)}); stored trials are kept, run the same command again to resume"
                ) from None
            time.sleep(min(5.0, settings.storage_retry_s / 10))
            try:
                storage = open_storage(settings.storage, heartbeat_s=settings.heartbeat_s)
                study = load_study(settings.study, storage)
            except MnistBenchError:
                continue  # still down: the next pass waits again
    if stop is not None and stop.is_set():
        raise KeyboardInterrupt("stop requested")
    return SearchOutcome(
        study=study, ran=ran, finished=n_finished(study), target=settings.trials, counts=state_counts(study)
    )


@dataclass(frozen=True)
class RankedTrial:
    trial: FrozenTrial
    rank: int  # 1 for the best complete trial
    n_complete: int


def pick_trial(study: optuna.Study, number: int | None = None) -> RankedTrial:
    """The best complete trial (or trial ``number``) with its rank among complete trials."""
    complete = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
        key=lambda t: (-(t.values[0] if t.values else -math.inf), t.number),
    )
    if not complete:
        counts = counts_text(state_counts(study))
        raise MnistBenchError(f"study {study.study_name!r} has no complete trial yet ({counts}): run search first")
    if number is None:
        return RankedTrial(complete[0], 1, len(complete))
    for rank, trial in enumerate(complete, start=1):
        if trial.number == number:
            return RankedTrial(trial, rank, len(complete))
    known = ", ".join(str(t.number) for t in sorted(complete, key=lambda t: t.number))
    raise MnistBenchError(f"trial {number} is not a complete trial of study {study.study_name!r} (complete: {known})")


def counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "no trials"


def trial_config(study: optuna.Study, trial: FrozenTrial, *, epochs: int | None = None) -> TrainConfig:
    """Rebuild a stored trial's config through the same ``sample_config`` the search used."""
    return sample_config(
        optuna.trial.FixedTrial(trial.params),
        stored_space(study),
        epochs=epochs or trial.user_attrs.get("epochs_run") or 1,
        seed=trial.user_attrs.get("train_seed", 0),
    )
