"""A search's anytime curve: the best validation accuracy so far against wall-clock seconds.

Search methods are judged by it (the BOHB, DEHB and ASHA papers' plots): which one gets to
a good model sooner, the median and spread over seeded repeats on one time grid. Every
finished trial counts, pruned ones too: a pruned trial's accuracy is the best epoch-end
validation accuracy it measured (``TrialRecord.accuracy``), as real a measurement as a
complete trial's. Pure functions of stored trials; nothing here runs a trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.search.noise import binomial_se
from mnist_bench.search.records import TrialRecord

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# The moments (seconds since a search's start) at which a comparison's table reads the
# curves: the round minutes HPO papers report, from 15 s for short searches to 4 h.
MOMENTS_S = (15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


@dataclass(frozen=True)
class CurvePoint:
    """One finished trial on the curve."""

    trial: int  # the trial's number in its study
    seconds: float  # from the search's start to the trial's end
    accuracy: float  # its validation accuracy (best epoch)
    best: float  # the best accuracy of it and every trial that finished before it


@dataclass(frozen=True)
class AnytimeCurve:
    """The finished trials of one search, in the order they finished."""

    points: tuple[CurvePoint, ...]
    # Seconds at which each finished trial ended, those without an epoch-end accuracy too (a
    # trial pruned inside its first epoch): what the search's rate counts. Empty: the points'.
    ends: tuple[float, ...] = ()

    @property
    def finished(self) -> int:
        """Finished trials, with or without an accuracy on the curve."""
        return len(self.ends) if self.ends else len(self.points)

    @property
    def final_best(self) -> float:
        """The best accuracy the search found (nan if it finished no measured trial)."""
        return self.points[-1].best if self.points else math.nan

    @property
    def seconds(self) -> float:
        """Seconds from the start to its last finished trial (0 without one)."""
        if self.ends:
            return self.ends[-1]
        return self.points[-1].seconds if self.points else 0.0

    def best_at(self, grid: np.ndarray) -> np.ndarray:
        """The curve as a step function read at each time of ``grid``: nan before its first trial."""
        times = np.array([p.seconds for p in self.points])
        bests = np.array([p.best for p in self.points])
        # The last point at or before each time; -1 where none has finished yet.
        index = np.searchsorted(times, grid, side="right") - 1
        return np.where(index >= 0, bests[np.maximum(index, 0)] if len(bests) else math.nan, math.nan)


def first_start(trials: Sequence[FrozenTrial]) -> datetime | None:
    """When the first of ``trials`` started: a stored study's start, read from its trials."""
    return min((t.datetime_start for t in trials if t.datetime_start is not None), default=None)


def anytime_curve(trials: Sequence[FrozenTrial], start: datetime | None = None) -> AnytimeCurve:
    """The curve of a search's ``trials`` since ``start`` (default: its first trial's start).

    Finished trials (complete or pruned) with an epoch-end accuracy are its points; every
    finished trial is in its ``ends``; failed and running ones measured nothing.
    """
    start = start or first_start(trials)
    ended = [(end, t) for t in trials if t.state in FINISHED and (end := t.datetime_complete) is not None]
    done = sorted(
        (
            (end, t.number, accuracy)
            for end, t in ended
            if (accuracy := TrialRecord.of(t).accuracy) is not None and not math.isnan(accuracy)
        ),
        key=lambda row: (row[0], row[1]),
    )
    if start is None:  # no trial started: nothing finished either
        return AnytimeCurve(())
    points: list[CurvePoint] = []
    best = -math.inf
    for end, number, accuracy in done:
        best = max(best, accuracy)
        points.append(CurvePoint(number, (end - start).total_seconds(), accuracy, best))
    ends = sorted((end - start).total_seconds() for end, _ in ended)
    return AnytimeCurve(tuple(points), tuple(ends))


def time_grid(curves: Sequence[AnytimeCurve], *, n: int = 200) -> np.ndarray:
    """``n`` evenly spaced times from 0 to the end of the longest curve, each curve's end included."""
    if n < 2:
        raise ValueError(f"{n=} must be >= 2")
    end = max((c.seconds for c in curves), default=0.0)
    return np.unique(np.concatenate([np.linspace(0.0, end, n), [c.seconds for c in curves]]))


@dataclass(frozen=True)
class Band:
    """Curves of one method's repeats read on one grid: their median and their spread."""

    grid: np.ndarray  # seconds
    median: np.ndarray  # median best-so-far over the repeats (nan while most have none yet)
    low: np.ndarray  # the worst repeat's best-so-far (nan while any has none yet)
    high: np.ndarray  # the best repeat's best-so-far (nan while none has one yet)


def band(curves: Sequence[AnytimeCurve], grid: np.ndarray) -> Band:
    """Median, min and max of ``curves`` at each time of ``grid``.

    A repeat with no finished trial yet has found nothing: it counts as worse than any
    accuracy (not left out, which would let a lucky early repeat stand for all of them).
    """
    if not curves:
        raise ValueError("band of no curves")
    values = np.stack([c.best_at(grid) for c in curves])
    values = np.where(np.isnan(values), -np.inf, values)

    def shown(row: np.ndarray) -> np.ndarray:
        return np.where(np.isinf(row), np.nan, row)

    return Band(grid, shown(np.median(values, axis=0)), shown(values.min(axis=0)), shown(values.max(axis=0)))


def moments(curves: Sequence[AnytimeCurve], *, most: int = 7) -> tuple[int, ...]:
    """The last ``most`` of ``MOMENTS_S`` that the longest of ``curves`` lasted to."""
    end = max((c.seconds for c in curves), default=0.0)
    return tuple(m for m in MOMENTS_S if m <= end)[-most:]


def median_best_at(curves: Sequence[AnytimeCurve], seconds: Sequence[float]) -> tuple[float | None, ...]:
    """The median over ``curves`` of the best found by each of ``seconds`` (``band``'s
    median): None where most had found nothing yet. A curve that ended earlier counts with
    the best it ended with."""
    median = band(curves, np.asarray(seconds, dtype=float)).median
    return tuple(None if math.isnan(v) else float(v) for v in median)


def seconds_to_within(curve: AnytimeCurve, reference: float, se: float) -> float | None:
    """When ``curve`` first came within ``se`` of ``reference`` (best >= reference - se); None if never."""
    return next((p.seconds for p in curve.points if p.best >= reference - se), None)


def reference_se(reference: float, val_size: int) -> float:
    """The validation's standard error at ``reference``: how close counts as tied with it."""
    return binomial_se(reference, val_size)


def trials_per_minute(curve: AnytimeCurve) -> float:
    """Finished trials per minute of the search's wall-clock time, to its last finished trial
    (nan for an empty curve)."""
    return curve.finished / curve.seconds * 60.0 if curve.seconds > 0 else math.nan
