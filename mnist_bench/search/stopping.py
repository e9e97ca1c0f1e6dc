"""When a search has stopped improving: its best's last move beyond the validation's noise,
and the rule ``search --stop-when-flat`` stops by.

Both read a study as the sequence of its finished trials (complete or pruned) in number
order, each as (trial number, accuracy), the accuracy None for a trial that cannot hold the
best (a pruned one: it trained fewer epochs). Pure functions of that sequence: the loop
(``loop.run_trials``) reads it from the study after each finished trial.

A maximum over noisy figures creeps up by luck alone: among many trials of equal merit the
best one keeps being beaten by a hair. So a new best counts as a *move* only if it beats the
best at the last move by more than that best's binomial standard error (``noise.binomial_se``).
Comparing with the last move's best, not with the latest record, lets a run of small steps
add up to a move once together they clear the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mnist_bench.search.noise import binomial_se

# The stop rule: after the last move, wait at least MIN_PATIENCE finished trials, and at
# least PATIENCE_RATIO times the finished trials it took to reach that move (a best found
# late, after a long search, earns a longer wait than one found in the first few trials).
MIN_PATIENCE = 10
PATIENCE_RATIO = 0.5

Finished = Sequence[tuple[int, float | None]]  # (trial number, accuracy or None), in number order


@dataclass(frozen=True)
class Plateau:
    """Where a search's best stands: what it is, and since when it has not moved beyond the noise."""

    best: float  # the best accuracy so far
    best_trial: int  # the trial that holds it (the first of equals)
    best_se: float  # its binomial standard error on ``val_size`` images
    val_size: int  # validation images every accuracy was measured on
    moved_at: int  # the trial of the last move beyond the noise
    reached_in: int  # finished trials up to and including that trial
    flat_for: int  # finished trials after it


@dataclass(frozen=True)
class FlatStop:
    """Why a search stopped before its --trials: the stop rule held after ``finished`` trials."""

    plateau: Plateau  # the best and its last move, when the rule held
    patience: int  # finished trials the rule waits after the last move (``patience``)
    finished: int  # finished trials the study held when it stopped


def plateau(finished: Finished, val_size: int) -> Plateau | None:
    """The best of ``finished`` and its last move beyond the noise; None while no trial holds one."""
    if val_size < 1:
        raise ValueError(f"{val_size=} must be >= 1")
    best: tuple[float, int] | None = None  # (accuracy, trial)
    anchor: tuple[float, int, int] | None = None  # the last move: (accuracy, trial, position from 1)
    for position, (number, accuracy) in enumerate(finished, start=1):
        if accuracy is None:
            continue
        if best is None or accuracy > best[0]:
            best = (accuracy, number)
        if anchor is None or accuracy > anchor[0] + binomial_se(anchor[0], val_size):
            anchor = (accuracy, number, position)
    if best is None or anchor is None:
        return None
    return Plateau(
        best=best[0],
        best_trial=best[1],
        best_se=binomial_se(best[0], val_size),
        val_size=val_size,
        moved_at=anchor[1],
        reached_in=anchor[2],
        flat_for=len(finished) - anchor[2],
    )


def patience(reached_in: int) -> int:
    """Finished trials to wait after a move reached in ``reached_in`` finished trials."""
    return max(MIN_PATIENCE, math.ceil(PATIENCE_RATIO * reached_in))


def flat_stop(finished: Finished, val_size: int) -> FlatStop | None:
    """The stop rule: a FlatStop once the best has not moved beyond the noise for ``patience``
    finished trials; None while it may still move (or no trial holds a best yet)."""
    where = plateau(finished, val_size)
    if where is None:
        return None
    wait = patience(where.reached_in)
    return FlatStop(where, wait, len(finished)) if where.flat_for >= wait else None
