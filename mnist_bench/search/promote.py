"""Multi-fidelity search, second stage: the best few trials of a short search, trained longer.

A search ranks recipes by what they reach in a few epochs; deformations and regularizers
may pay only in long training, so short trials can rank them wrongly. ``promote_trials``
trains the best few complete trials of a finished study again, each with its own
parameters and training seed but ``epochs`` epochs (a whole learning-rate schedule of
that length, not a continuation), as trials of a second study with the same space and
validation split. Its winner is what ``best --retrain`` should reproduce; the table of
both ranks, with their Spearman correlation, shows whether the short search ranked the
way long training does.

The second study is an ordinary one: resumable (run the same command again), on any
storage, with its own leaderboard. Each of its trials records the short trial it
promotes (``promoted_from``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.data import DeviceData, ensure_split
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.interrupt import StopFlag
from mnist_bench.search.leaderboard import leaderboard, or_nan, study_dir, write_leaderboard
from mnist_bench.search.loop import open_study, pick_trial, ranked_complete, run_trials, stored_space
from mnist_bench.search.objectives import FIRST
from mnist_bench.search.pruners import NO_PRUNER
from mnist_bench.search.records import StudyRecord, TrialRecord, promotion_attrs, record_promoted_from
from mnist_bench.search.study import SearchSettings, TrialEpoch
from mnist_bench.storage.heartbeats import StoppedWait
from mnist_bench.storage.rdb import load_study, open_storage
from mnist_bench.training.device import resolve_device

# A promoted trial already stands for its short trial once it is finished, queued or running.
_STANDING = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING)


@dataclass(frozen=True)
class PromotedRow:
    short_trial: int
    short_value: float  # best validation accuracy in the short search
    short_rank: int  # 1 for the short study's best
    long_trial: int | None  # the trial in the long study (None if it did not finish)
    long_value: float | None  # its best validation accuracy over the long training
    long_rank: int | None  # among the promoted trials, 1 for the best


@dataclass(frozen=True)
class Promotion:
    study: optuna.Study  # the long study
    rows: tuple[PromotedRow, ...]  # in the short study's order

    @property
    def spearman(self) -> float | None:
        """Rank correlation of short and long validation accuracy (None below 3 finished rows)."""
        pairs = [(r.short_value, r.long_value) for r in self.rows if r.long_value is not None]
        if len(pairs) < 3:
            return None
        short, long = (np.argsort(np.argsort(column)).astype(float) for column in zip(*pairs, strict=True))
        if short.std() == 0 or long.std() == 0:
            return None
        return float(np.corrcoef(short, long)[0, 1])

    @property
    def winner(self) -> PromotedRow | None:
        finished = [r for r in self.rows if r.long_rank is not None]
        return min(finished, key=lambda r: r.long_rank) if finished else None  # type: ignore[arg-type, return-value]


def top_trials(short: optuna.Study, top: int) -> list[FrozenTrial]:
    """The ``top`` best complete trials of ``short``, best first (ranked as ``best`` ranks them)."""
    if top < 1:
        raise UsageError(f"--best {top}: must be at least 1")
    pick_trial(short)  # the one-line error of a study with no complete trial yet
    return ranked_complete(short)[:top]


def long_settings(short: optuna.Study, settings: SearchSettings, top: int) -> SearchSettings:
    """The long study's settings: ``top`` trials, no pruning, the short study's validation split."""
    if settings.study == short.study_name:
        raise UsageError(f"--into {settings.study!r}: the longer trials need a study of their own")
    if stored_space(short).searches_epochs:
        raise UsageError(
            f"study {short.study_name!r}: each of its trials drew its own epochs (a speed space), which a promotion "
            "would keep: time one as a recipe with `speedrun --study NAME --trial N` instead"
        )
    stored = StudyRecord.of(short).val_size
    val_size = settings.val_size if stored is None else stored
    return replace(settings, trials=top, pruner=NO_PRUNER, val_size=val_size, objectives=(FIRST,))


def queue_promotions(long: optuna.Study, chosen: list[FrozenTrial]) -> int:
    """Enqueue each chosen trial not yet standing in ``long``; how many were queued."""
    standing = {TrialRecord.of(t).promoted_from for t in long.get_trials(deepcopy=False, states=_STANDING)}
    queued = 0
    for trial in chosen:
        if trial.number in standing:
            continue
        long.enqueue_trial(trial.params, user_attrs=promotion_attrs(TrialRecord.of(trial)), skip_if_exists=False)
        queued += 1
    return queued


def promotion_rows(long: optuna.Study, chosen: list[FrozenTrial]) -> tuple[PromotedRow, ...]:
    """One row per chosen short trial, with its promoted trial's result where it finished."""
    wanted = {t.number for t in chosen}
    done = {
        r.promoted_from: r
        for r in map(TrialRecord.of, long.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if r.accuracy is not None and r.promoted_from in wanted
    }
    numbers = {r.number for r in done.values()}
    ranked = [t for t in ranked_complete(long) if t.number in numbers]
    long_rank = {t.number: rank for rank, t in enumerate(ranked, start=1)}
    rows = []
    for rank, trial in enumerate(map(TrialRecord.of, chosen), start=1):
        promoted = done.get(trial.number)
        rows.append(
            PromotedRow(
                short_trial=trial.number,
                short_value=or_nan(trial.accuracy),
                short_rank=rank,
                long_trial=None if promoted is None else promoted.number,
                long_value=None if promoted is None else or_nan(promoted.accuracy),
                long_rank=None if promoted is None else long_rank[promoted.number],
            )
        )
    return tuple(rows)


def promote_trials(
    short: optuna.Study,
    settings: SearchSettings,
    *,
    data_dir: Path,
    verify: bool,
    device: str,
    studies_dir: Path,
    stop: StopFlag | None = None,
    on_start: Callable[[list[FrozenTrial], torch.device], None] | None = None,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_epoch: Callable[[TrialEpoch], None] | None = None,
    on_wait: Callable[[StoppedWait], None] | None = None,
) -> Promotion:
    """Train the ``settings.trials`` best trials of ``short`` for ``settings.epochs`` epochs in
    study ``settings.study``, on the short study's validation split; write its leaderboard.

    ``settings`` come from ``long_settings``. Trials finished by an earlier, interrupted
    call are kept; only the missing ones train. ``on_start`` hears which trials and where,
    once the data is on the device.
    """
    chosen = top_trials(short, settings.trials)
    space = stored_space(short)
    split = ensure_split(data_dir, "train", verify=verify)  # before the study: a bad start leaves no empty study
    data = DeviceData.with_validation(split, resolve_device(device), val_size=settings.val_size)
    del split
    long = open_study(settings, space, open_storage(settings.storage, heartbeat_s=settings.heartbeat_s))
    source = StudyRecord.of(long).promoted_from
    if source is not None and source != short.study_name:
        raise MnistBenchError(
            f"study {settings.study!r} holds trials promoted from study {source!r}; choose another name with --into"
        )
    if on_start is not None:
        on_start(chosen, data.device)
    record_promoted_from(long, short.study_name)
    queue_promotions(long, chosen)
    run_trials(
        settings, space, data, on_trial=on_trial, study=long, stop=stop, on_notice=on_notice, on_epoch=on_epoch,
        on_wait=on_wait,
    )  # fmt: skip
    final = load_study(settings.study, open_storage(settings.storage))
    write_leaderboard(leaderboard(final, space), study_dir(studies_dir, settings.study))
    return Promotion(study=long, rows=promotion_rows(long, chosen))
