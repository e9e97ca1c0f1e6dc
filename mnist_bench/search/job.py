"""A whole ``search``: data checked, the study opened, trials run here or in workers, the
leaderboard read back and written. What the CLI's ``search`` command does, as data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from mnist_bench.data import DeviceData, ensure_split, validation_indices
from mnist_bench.interrupt import StopFlag
from mnist_bench.search.leaderboard import Ties, leaderboard, study_dir, tied_at_top, write_leaderboard
from mnist_bench.search.loop import open_study, run_trials, study_plateau, watched_val_size
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.stopping import FlatStop, Plateau
from mnist_bench.search.study import SearchSettings
from mnist_bench.search.workers import WorkerJob, run_workers
from mnist_bench.storage.heartbeats import StoppedWait
from mnist_bench.storage.rdb import load_study, open_storage
from mnist_bench.storage.trial_states import n_finished, state_counts
from mnist_bench.training.device import resolve_device


@dataclass(frozen=True)
class StudyStart:
    """The study as the search finds it, before any trial runs."""

    study: optuna.Study
    settings: SearchSettings  # what this search runs
    trials: int  # trials it holds, of any state
    missing: int  # finished trials short of the target: at most this many run now


@dataclass(frozen=True)
class SearchResult:
    """A search's end, read back from the storage (workers and other machines wrote to it too)."""

    study: optuna.Study
    frame: pd.DataFrame  # the leaderboard, best first
    paths: list[Path]  # where it was written
    counts: Counter[str]  # trials per state
    finished: int  # finished trials the study holds
    target: int  # finished trials it should hold (--trials)
    interrupted: bool  # Ctrl-C stopped it; the same command resumes
    # What the validation's noise says of the result (single-objective studies; None otherwise):
    ties: Ties | None  # the trials tied with the best, where there are two or more
    plateau: Plateau | None  # since when the best has not moved beyond the noise
    flat: FlatStop | None  # why --stop-when-flat stopped the search; None if it did not


def run_search(
    settings: SearchSettings,
    space: SearchSpace,
    *,
    devices: Sequence[str],
    data_dir: Path,
    verify: bool,
    studies_dir: Path,
    stop: StopFlag | None = None,
    on_start: Callable[[StudyStart], None] | None = None,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_wait: Callable[[StoppedWait], None] | None = None,
) -> SearchResult:
    """Run (or resume) ``settings.study`` in this process (one device) or one worker per
    entry of ``devices``; write its leaderboard under ``studies_dir``.

    Data and space are checked before the study is created: a failed start leaves no
    empty study behind. A Ctrl-C (KeyboardInterrupt, or ``stop``) ends the trials, not
    this: the leaderboard is written and ``interrupted`` says so.
    """
    if not devices:
        raise ValueError(f"{devices=}: at least one device")
    # Several workers load their own copies; this process only checks.
    split = ensure_split(data_dir, "train", verify=verify)
    data = None
    if len(devices) == 1:  # in this process
        data = DeviceData.with_validation(split, resolve_device(devices[0]), val_size=settings.val_size)
    else:
        validation_indices(len(split), settings.val_size)  # the same check, without the device copy
    del split
    if stop is not None and stop.is_set():  # Ctrl-C while the data loaded: no study created for nothing
        raise KeyboardInterrupt("stop requested")
    study = open_study(settings, space, open_storage(settings.storage, heartbeat_s=settings.heartbeat_s))
    if on_start is not None:
        on_start(StudyStart(study, settings, len(study.trials), max(settings.trials - n_finished(study), 0)))
    interrupted, flat = False, None
    try:
        if data is not None:
            counts = run_trials(
                settings, space, data, on_trial=on_trial, study=study, stop=stop, on_notice=on_notice, on_wait=on_wait
            )
        else:
            job = WorkerJob(settings, space, data_dir, verify, tuple(devices))
            counts = run_workers(job, study, on_trial=on_trial, stop=stop, on_notice=on_notice, on_wait=on_wait)
        flat = counts.flat
    except KeyboardInterrupt:
        interrupted = True
    final = load_study(settings.study, open_storage(settings.storage))
    frame = leaderboard(final, space)
    paths = write_leaderboard(frame, study_dir(studies_dir, settings.study))
    return SearchResult(
        final,
        frame,
        paths,
        state_counts(final),
        n_finished(final),
        settings.trials,
        interrupted,
        ties=tied_at_top(frame, watched_val_size(final)),
        plateau=study_plateau(final),
        flat=flat,
    )
