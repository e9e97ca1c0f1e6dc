"""Running a search: the study with its sampler and pruner, the one run loop, the winner.

``run_trials`` keeps ``--parallel`` K trials in flight side by side (``training.lanes``),
one at a time being K = 1; what starts and judges each trial is ``trial_runner``'s, and what a
trial is before and after training (its config, seed, attributes, outcome) is
``study``'s. Budget (``--trials`` counts finished trials), timeout, ``--stop-when-flat``
(``stopping``), the wait for stopped workers' trials and the storage-loss policy are written
here once, for every K. It returns plain data; the CLI renders it. Several processes, on one machine or many, may
run ``run_trials`` on one study at once: they share it through its storage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError, one_line
from mnist_bench.interrupt import StopFlag
from mnist_bench.search.objectives import objective_spec
from mnist_bench.search.pruners import NO_PRUNER, make_pruner
from mnist_bench.search.records import StudyRecord, TrialRecord, record_new_study
from mnist_bench.search.samplers import make_sampler
from mnist_bench.search.space import SearchSpace, sample_config, sample_precision
from mnist_bench.search.stopping import FlatStop, Plateau, flat_stop, plateau
from mnist_bench.search.study import SearchSettings, TrialCounts, TrialEpoch, check_streams
from mnist_bench.search.trial_runner import TrialRunner
from mnist_bench.storage.heartbeats import StoppedWait, TrialHeartbeats, wait_for_stopped
from mnist_bench.storage.rdb import host_of, open_storage
from mnist_bench.storage.trial_states import FINISHED, counts_text, n_finished, state_counts
from mnist_bench.training.lanes import run_in_flight


def open_study(settings: SearchSettings, space: SearchSpace, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or resume it if its space, validation split, objectives, reports an
    epoch and random streams match."""
    study = optuna.create_study(
        study_name=settings.study,
        storage=storage,
        # Workers seeded alike would propose the very same parameters: offset each one.
        sampler=make_sampler(
            settings.sampler,
            None if settings.seed is None else settings.seed + settings.worker,
            parallel=settings.parallel,
        ),
        # Optuna takes no reports with several objectives: its pruner judges nothing there,
        # the trial runner judges at the rungs of settings.pruner (moasha).
        pruner=make_pruner(
            NO_PRUNER if settings.multi_objective else settings.pruner,
            settings.epochs,
            reports_per_epoch=settings.reports_per_epoch,
        ),
        directions=[objective_spec(o).direction for o in settings.objectives],
        load_if_exists=True,
    )
    record = StudyRecord.of(study)
    if record.space is None:
        record_new_study(
            study,
            space=space,
            val_size=settings.val_size,
            objectives=settings.objectives,
            sampler=settings.sampler,
            pruner=settings.pruner,
            epochs=settings.epochs,
            seed=settings.seed,
            reports_per_epoch=settings.reports_per_epoch,
        )
    else:
        # Compared as spaces, so a study from before a key existed still matches its defaults.
        differs = [
            name
            for name, same in (
                ("space", record.space == space),
                (f"val_size ({record.val_size}, this run {settings.val_size})", record.val_size == settings.val_size),
                ("objective", record.objectives == tuple(settings.objectives)),
                # Its trials' report steps count reports of that many an epoch: other steps would mix.
                (
                    f"reports_per_epoch ({record.reports_per_epoch}: --reports-per-epoch {record.reports_per_epoch})",
                    record.reports_per_epoch == settings.reports_per_epoch,
                ),
            )
            if not same
        ]
        if differs:
            raise MnistBenchError(
                f"study {settings.study!r} was run with another {' and '.join(differs)}; "
                "resume it with the same settings, or start a new study with --study NAME"
            )
        check_streams(record, settings)
    return study


def stored_space(study: optuna.Study) -> SearchSpace:
    """The space a study searches (the default space for a study mnist-bench did not create)."""
    space = StudyRecord.of(study).space
    return SearchSpace() if space is None else space


KEPT = "stored trials are kept, run the same command again to resume"  # after a storage is lost


def pareto_numbers(study: optuna.Study) -> set[int]:
    """Trial numbers on the Pareto front of a multi-objective study (empty otherwise)."""
    return {t.number for t in study.best_trials} if len(study.directions) > 1 else set()


def run_trials(
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
) -> TrialCounts:
    """Run trials until the study holds ``settings.trials`` finished ones, ``settings.parallel``
    in flight side by side (one at a time the K = 1 case; see ``trial_runner``).

    One call starts at most the number missing when it began, so trials that fail (and
    do not count) cannot make it loop forever; running it again tops the study up. A
    storage that stops answering is retried for ``settings.storage_retry_s`` seconds,
    then given up with a one-line error; trials stored before stay stored, and a trial
    that lost the storage does not count. A trial that another worker finished first is
    passed to ``on_notice`` as one line, and the search goes on. ``on_epoch`` sees every
    epoch of every trial trained here. Trials whose worker stopped (killed, say) are
    waited out and retried here (``storage.heartbeats``), and ``on_wait`` hears how long that takes;
    live workers' trials are left to them.

    With ``settings.stop_when_flat`` the study is judged by ``stopping.flat_stop`` before the
    first trial and after each finished one; once the rule holds no trial starts (those in
    flight finish, as after --timeout), and the returned counts say why in ``flat``.
    """
    if study is None:
        study = open_study(settings, space, open_storage(settings.storage, heartbeat_s=settings.heartbeat_s))
    announced: set[int] = set()  # trials whose stopped worker on_wait was told of
    watch = FlatWatch(study, on_trial) if settings.stop_when_flat else None
    with TrialHeartbeats(study, settings.heartbeat_s) as beats:
        runner = TrialRunner(
            settings,
            space,
            data,
            study,
            beats,
            budget=max(settings.trials - n_finished(study), 0),
            stop=stop,
            on_trial=on_trial if watch is None else watch.trial,
            on_notice=on_notice or (lambda _line: None),
            on_epoch=on_epoch,
        )
        if watch is not None:
            watch.runner = runner
            watch.judge()  # a study resumed after its rule held is done already
        while True:
            k = settings.parallel
            run_in_flight(k, runner.start, runner.judge, runner.abandon, device=data.device, on_done=runner.trained)
            if runner.down is not None:
                wait_for_storage(runner, settings)
                continue
            if runner.ran >= runner.budget or runner.stopping() or runner.out_of_time():
                break
            try:  # the lanes ran dry: whether a stopped worker's trial freed a place (``storage.heartbeats``)
                if not wait_for_stopped(
                    study, settings.trials, on_wait=on_wait, stop=stop, deadline=runner.deadline, announced=announced
                ):
                    break
            except Exception as exc:
                runner.storage_down(exc)
    if runner.stopping():
        raise KeyboardInterrupt("stop requested")
    return TrialCounts(
        study=study,
        ran=runner.ran,
        finished=n_finished(study),
        target=settings.trials,
        counts=state_counts(study),
        flat=None if watch is None else watch.flat,
    )


@dataclass
class FlatWatch:
    """``--stop-when-flat`` over one ``run_trials``: judges the study by ``stopping.flat_stop``
    after each finished trial (passed on to ``on_trial`` first) and when asked; once the rule
    holds, closes ``runner`` the way --timeout does."""

    study: optuna.Study
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None
    runner: TrialRunner | None = None
    flat: FlatStop | None = None  # the rule's verdict, once it held

    def trial(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        if self.on_trial is not None:
            self.on_trial(study, frozen)
        self.judge()

    def judge(self) -> None:
        if self.flat is None and (flat := study_flat_stop(self.study)) is not None:
            self.flat = flat
            assert self.runner is not None
            self.runner.close()


def wait_for_storage(runner: TrialRunner, settings: SearchSettings) -> None:
    """Wait while the storage does not answer, ``settings.storage_retry_s`` from its first
    failure at most, then give up in one line; the same policy whatever ``--parallel``."""
    while not runner.storage_back():
        assert runner.down is not None
        if time.monotonic() - runner.down_since > settings.storage_retry_s:
            raise MnistBenchError(
                f"lost the storage at {host_of(settings.storage)} for over {settings.storage_retry_s:.0f} s "
                f"({one_line(runner.down)}); {KEPT}"
            ) from None
        if runner.stopping():
            raise KeyboardInterrupt("stop requested")
        time.sleep(min(5.0, settings.storage_retry_s / 10))


def finished_trials(study: optuna.Study) -> list[tuple[int, float | None]]:
    """The study's finished trials in number order, as ``stopping`` reads them: a complete
    trial with its accuracy, a pruned one with None (it trained fewer epochs: it holds no best)."""
    return [
        (t.number, TrialRecord.of(t).accuracy if t.state == TrialState.COMPLETE else None)
        for t in sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)
    ]


def study_plateau(study: optuna.Study) -> Plateau | None:
    """Since when the study's best has not moved beyond the validation's noise; None where
    ``watched_val_size`` is, or without a complete trial."""
    val_size = watched_val_size(study)
    return None if val_size is None else plateau(finished_trials(study), val_size)


def study_flat_stop(study: optuna.Study) -> FlatStop | None:
    """``stopping.flat_stop`` of the study: whether ``--stop-when-flat`` stops it now."""
    val_size = watched_val_size(study)
    return None if val_size is None else flat_stop(finished_trials(study), val_size)


def watched_val_size(study: optuna.Study) -> int | None:
    """The validation size a study's best is judged on; None for a multi-objective study (its
    front may move while the best accuracy does not) or one that did not store it."""
    return None if len(study.directions) > 1 else StudyRecord.of(study).val_size


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


def trial_config(study: optuna.Study, trial: FrozenTrial, *, epochs: int | None = None) -> TrainConfig:
    """Rebuild a stored trial's config through the same ``sample_config`` the search used.

    Asked in its default mode, which reads only the parameters the config uses: a trial of
    a whole-space sampler (``gp``) stores more, and is rebuilt all the same from those its
    ``n_layers``, ``optimizer`` and ``augment`` chose.
    """
    record = TrialRecord.of(trial)
    config = sample_config(
        optuna.trial.FixedTrial(trial.params),
        stored_space(study),
        epochs=epochs or record.epochs_run or 1,
        seed=record.train_seed or 0,
    )
    return config if epochs is None else replace(config, epochs=epochs)  # a space's drawn epochs, unless told


def trial_precision(study: optuna.Study, trial: FrozenTrial, default: str) -> str:
    """The precision a stored trial trained in, where its space chose one; else ``default``."""
    return sample_precision(optuna.trial.FixedTrial(trial.params), stored_space(study), default)
