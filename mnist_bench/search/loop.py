"""Running a search: sampler, pruner, the objective around ``train``, the run loop, the winner.

``run_search`` runs one trial at a time through ``study.optimize``, or hands over to
``search_inflight`` for K side by side; what a trial is before and after training (its
config, seed, attributes, outcome) is ``study``'s, shared by both. With ``study``,
``search_inflight`` and ``space.sample_config``, the only modules that touch Optuna
trials. It returns plain data; the CLI renders it. Several processes, on one machine or
many, may run ``run_search`` on one study at once: they share it through its storage.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from mnist_bench import __version__
from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.interrupt import StopFlag
from mnist_bench.search.inflight_loop import run_search_in_flight
from mnist_bench.search.records import TrialRecord, record_reason, record_study_streams
from mnist_bench.search.space import SearchSpace, sample_config
from mnist_bench.search.study import (
    OBJECTIVES,
    SearchOutcome,
    SearchSettings,
    SurplusTrial,
    TrialEpoch,
    TrialFailed,
    check_streams,
    elsewhere_notice,
    failure_reason,
    finished_elsewhere,
    prepare_trial,
    trial_outcome,
)
from mnist_bench.storage.heartbeats import StoppedWait, wait_for_stopped
from mnist_bench.storage.rdb import STORAGE_ERRORS, host_of, load_study, one_line, open_storage
from mnist_bench.storage.trial_states import n_finished, n_underway, state_counts
from mnist_bench.training.device import DeviceFault, device_fault, fault_message
from mnist_bench.training.trainer import train


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


def open_study(settings: SearchSettings, space: SearchSpace, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or resume it if its space, validation split and random streams match."""
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
        record_study_streams(study)
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
        check_streams(study, settings)
    return study


def stored_space(study: optuna.Study) -> SearchSpace:
    values = study.user_attrs.get("space")
    return SearchSpace.from_dict(values) if values else SearchSpace()


KEPT = "stored trials are kept, run the same command again to resume"  # after a storage is lost


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


def make_objective(
    settings: SearchSettings,
    space: SearchSpace,
    data: DeviceData,
    stop: StopFlag | None = None,
    progress: Callable[[TrialEpoch], None] | None = None,
    faults: list[str] | None = None,
    lost: set[int] | None = None,
) -> Callable[[optuna.Trial], float]:
    """The objective of ``study.optimize``. A sticky device fault fails its trial, stops the
    study and is appended to ``faults``: every later trial in this process would fail too.

    A trial that loses the storage (a report or an attribute that cannot be written) raises
    that error as it is and its number goes to ``lost``. Optuna catches every exception
    here and stores the trial as failed if the storage answers again by then: the trial
    did not fail, the storage did, so the search must not count it as one of its trials.
    """

    def objective(trial: optuna.Trial) -> float:
        try:
            return run_trial(trial)
        except Exception as exc:
            if lost is not None and storage_failure(exc) is not None:
                lost.add(trial.number)
            raise

    def run_trial(trial: optuna.Trial) -> float:
        started = time.monotonic()
        try:
            config = prepare_trial(trial, settings, space, data)
        except SurplusTrial:
            trial.study.stop()
            raise

        def on_epoch(epoch: int, acc: float) -> bool:
            if progress is not None:
                progress(TrialEpoch(trial.number, epoch, config.epochs, acc, time.monotonic() - started))
            if settings.multi_objective:  # Optuna supports neither report nor pruning here
                return False
            trial.report(acc, epoch)
            return trial.should_prune()

        failure = None
        try:
            result = train(config, data, on_epoch=on_epoch, stop=stop, runtime=settings.runtime)
        except KeyboardInterrupt:
            record_reason(trial, "interrupted (SIGINT) during training")
            raise
        except Exception as exc:  # e.g. out of memory: this trial fails, the search goes on
            lost_storage = storage_failure(exc)
            if lost_storage is not None:  # not the training's failure: the search waits for the storage
                with contextlib.suppress(*STORAGE_ERRORS):  # the leaderboard says why, if the storage is back
                    record_reason(trial, f"lost the storage: {failure_reason(lost_storage)}")
                raise
            failure = failure_reason(exc)
            fault = device_fault(exc)
            if fault is not None:
                failure = f"device fault: {fault}"
                if faults is not None:
                    faults.append(fault)
                trial.study.stop()
        if failure is not None:
            # Raised afresh, outside the handler: the training's exception and its traceback
            # (whose frames hold the model and any graph) are gone now, not at the next full
            # garbage collection, so one out-of-memory trial does not make the next likelier.
            record_reason(trial, failure)
            raise TrialFailed(failure)
        return trial_outcome(trial, result, settings, data)

    return objective


def pareto_numbers(study: optuna.Study) -> set[int]:
    """Trial numbers on the Pareto front of a multi-objective study (empty otherwise)."""
    return {t.number for t in study.best_trials} if len(study.directions) > 1 else set()


def run_search(
    settings: SearchSettings,
    space: SearchSpace,
    data: DeviceData,
    *,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    study: optuna.Study | None = None,
    stop: StopFlag | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_epoch: Callable[[TrialEpoch], None] | None = None,
    on_wait: Callable[[StoppedWait], None] | None = None,
) -> SearchOutcome:
    """Run trials until the study holds ``settings.trials`` finished ones.

    One call starts at most the number missing when it began, so trials that fail (and
    do not count) cannot make it loop forever; running it again tops the study up. A
    storage that stops answering is retried for ``settings.storage_retry_s`` seconds,
    then given up with a one-line error; trials stored before stay stored (with
    ``settings.parallel`` > 1 it is given up at once, the same way). A trial that
    another worker finished first is passed to ``on_notice`` as one line, and the search
    goes on. ``on_epoch`` sees every epoch of every trial trained here. Trials whose
    worker stopped (killed, say) are waited out and retried here (``stale``), and
    ``on_wait`` hears how long that takes; live workers' trials are left to them.
    """
    notice = on_notice or (lambda _line: None)
    if study is None:
        study = open_study(settings, space, open_storage(settings.storage, heartbeat_s=settings.heartbeat_s))
    if settings.parallel > 1:
        try:
            return run_search_in_flight(
                settings,
                space,
                data,
                on_trial=on_trial,
                study=study,
                stop=stop,
                on_notice=notice,
                on_epoch=on_epoch,
                on_wait=on_wait,
            )
        except Exception as exc:
            cause = storage_failure(exc)
            if cause is None or finished_elsewhere(exc):
                raise
            raise MnistBenchError(
                f"lost the storage at {host_of(settings.storage)} ({one_line(cause)}); a search with --parallel "
                f"does not wait for it: {KEPT}"
            ) from None
    faults: list[str] = []
    lost: set[int] = set()  # trials that lost the storage: Optuna may store them failed, they do not count
    objective = make_objective(settings, space, data, stop, on_epoch, faults, lost)
    started = time.monotonic()
    deadline = None if settings.timeout is None else started + settings.timeout
    budget = max(settings.trials - n_finished(study), 0)
    ran = 0
    outage_since: float | None = None
    announced: set[int] = set()  # trials whose stopped worker on_wait was told of

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran, outage_since
        outage_since = None
        if trial.number in lost:
            notice(f"trial {trial.number} lost the storage while it trained and failed; another takes its place")
        else:
            ran += 1
            if on_trial is not None:
                on_trial(study, trial)
        if stop is not None and stop.is_set():
            study.stop()
        # Other workers' running trials will finish: asking for one more would be surplus.
        if n_underway(study) >= settings.trials:
            study.stop()

    while ran < budget and not faults and not (stop is not None and stop.is_set()):
        timeout = None if settings.timeout is None else settings.timeout - (time.monotonic() - started)
        if timeout is not None and timeout <= 0:
            break
        try:
            if n_underway(study) >= settings.trials:
                # Full, counting running trials; a stopped worker's are retried once their grace is over.
                if wait_for_stopped(
                    study, settings.trials, on_wait=on_wait, stop=stop, deadline=deadline, announced=announced
                ):
                    continue
                break
            before = ran + len(lost)
            study.optimize(
                objective, n_trials=budget - ran, timeout=timeout, catch=(Exception,), callbacks=[after_trial]
            )
            if ran + len(lost) == before:  # it ran nothing (its timeout was up): nothing more will
                break
        except Exception as exc:
            if finished_elsewhere(exc):  # the trial ran here, and counts against this call's budget
                ran += 1
                notice(elsewhere_notice(exc))
                continue
            cause = storage_failure(exc)
            if cause is None:
                raise
            outage_since = outage_since or time.monotonic()
            if time.monotonic() - outage_since > settings.storage_retry_s:
                raise MnistBenchError(
                    f"lost the storage at {host_of(settings.storage)} for over {settings.storage_retry_s:.0f} s "
                    f"({one_line(cause)}); {KEPT}"
                ) from None
            time.sleep(min(5.0, settings.storage_retry_s / 10))
            try:
                storage = open_storage(settings.storage, heartbeat_s=settings.heartbeat_s)
                study = load_study(settings.study, storage)
            except MnistBenchError:
                continue  # still down: the next pass waits again
    if faults:
        raise DeviceFault(fault_message(data.device, faults[0], 1))
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


def ranked_complete(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials, best (first objective) first; ties go to the earlier trial."""

    def key(trial: FrozenTrial) -> tuple[float, int]:
        accuracy = TrialRecord.of(trial).accuracy
        return (-(accuracy if accuracy is not None else -math.inf), trial.number)

    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=key)


def pick_trial(study: optuna.Study, number: int | None = None) -> RankedTrial:
    """The best complete trial (or trial ``number``) with its rank among complete trials."""
    complete = ranked_complete(study)
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
    record = TrialRecord.of(trial)
    return sample_config(
        optuna.trial.FixedTrial(trial.params),
        stored_space(study),
        epochs=epochs or record.epochs_run or 1,
        seed=record.train_seed or 0,
    )
