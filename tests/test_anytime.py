from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.search.anytime import (
    AnytimeCurve,
    anytime_curve,
    band,
    first_start,
    median_best_at,
    moments,
    reference_se,
    seconds_to_within,
    time_grid,
    trials_per_minute,
)
from mnist_bench.search.records import BEST_VAL_ACC

T0 = datetime(2026, 1, 1, 12, 0, 0)


def trial(number: int, start_s: float, end_s: float | None, accuracy: float | None, state: TrialState) -> FrozenTrial:
    """A stored trial as the search leaves it: its best epoch's accuracy as an attribute."""
    made = optuna.trial.create_trial(
        state=state,
        value=accuracy if state == TrialState.COMPLETE else None,
        user_attrs={} if accuracy is None else {BEST_VAL_ACC: accuracy},
    )
    made.number = number
    made.datetime_start = T0 + timedelta(seconds=start_s)
    made.datetime_complete = None if end_s is None else T0 + timedelta(seconds=end_s)
    return made


def curve_of(*rows: tuple[float, float]) -> AnytimeCurve:
    """A curve from (end seconds, accuracy) rows, complete trials run one after another."""
    trials, start = [], 0.0
    for number, (end, accuracy) in enumerate(rows):
        trials.append(trial(number, start, end, accuracy, TrialState.COMPLETE))
        start = end
    return anytime_curve(trials, T0)


def test_the_curve_counts_pruned_trials_and_skips_failed_and_running_ones() -> None:
    trials = [
        trial(0, 1, 10, 0.90, TrialState.COMPLETE),
        trial(1, 10, 14, 0.95, TrialState.PRUNED),  # its best epoch measured 0.95: it counts
        trial(2, 14, 20, 0.99, TrialState.FAIL),  # failed: measured nothing to trust
        trial(3, 20, None, None, TrialState.RUNNING),
        trial(4, 20, 30, 0.93, TrialState.COMPLETE),
        trial(5, 30, 31, None, TrialState.PRUNED),  # diverged before any epoch ended
    ]
    curve = anytime_curve(trials, T0)
    assert [(p.trial, p.seconds, p.accuracy, p.best) for p in curve.points] == [
        (0, 10.0, 0.90, 0.90),
        (1, 14.0, 0.95, 0.95),
        (4, 30.0, 0.93, 0.95),
    ]
    # Trial 5 is no point but a finished trial: the search's end and its rate count it.
    assert curve.final_best == 0.95 and curve.seconds == 31.0 and curve.finished == 4
    assert trials_per_minute(curve) == pytest.approx(4 / 31 * 60)
    # Without a start given, the first trial's start is the origin.
    assert first_start(trials) == T0 + timedelta(seconds=1)
    assert anytime_curve(trials).points[0].seconds == 9.0


def test_trials_count_in_the_order_they_finished_not_by_number() -> None:
    trials = [trial(0, 0, 20, 0.97, TrialState.COMPLETE), trial(1, 0, 5, 0.91, TrialState.COMPLETE)]
    assert [p.best for p in anytime_curve(trials, T0).points] == [0.91, 0.97]


def test_a_curve_read_on_a_grid_is_a_step_function() -> None:
    curve = curve_of((10, 0.90), (20, 0.95), (30, 0.93))
    read = curve.best_at(np.array([0.0, 9.99, 10.0, 15.0, 20.0, 100.0]))
    assert np.isnan(read[:2]).all()
    assert read[2:].tolist() == [0.90, 0.90, 0.95, 0.95]
    assert np.isnan(AnytimeCurve(()).best_at(np.array([0.0, 5.0]))).all()


def test_band_takes_median_and_spread_and_a_repeat_without_a_trial_counts_as_nothing_found() -> None:
    a = curve_of((10, 0.90), (20, 0.96))
    b = curve_of((15, 0.92), (25, 0.94))
    c = curve_of((30, 0.80))
    grid = np.array([5.0, 12.0, 16.0, 22.0, 30.0])
    made = band([a, b, c], grid)
    # At 12 s only a has a model: two repeats of three have none, so there is no median yet.
    assert np.isnan(made.median[:2]).all() and made.median[2:].tolist() == [0.90, 0.92, 0.94]
    assert np.isnan(made.low[:4]).all() and made.low[4] == 0.80
    assert np.isnan(made.high[0]) and made.high[1:].tolist() == [0.90, 0.92, 0.96, 0.96]
    with pytest.raises(ValueError, match="no curves"):
        band([], grid)


def test_the_grid_reaches_every_curves_end() -> None:
    grid = time_grid([curve_of((10, 0.9)), curve_of((7.5, 0.9))], n=5)
    assert grid[0] == 0.0 and grid[-1] == 10.0 and 7.5 in grid
    assert (np.diff(grid) > 0).all()


def test_time_to_within_one_standard_error_of_a_reference() -> None:
    curve = curve_of((10, 0.95), (20, 0.975), (30, 0.981))
    se = reference_se(0.98, 5000)
    assert se == pytest.approx(math.sqrt(0.98 * 0.02 / 5000))  # about 0.002
    assert seconds_to_within(curve, 0.98, se) == 30.0  # 0.975 is 2.5 SE short
    assert seconds_to_within(curve, 0.976, se) == 20.0  # 0.975 is half an SE short
    assert seconds_to_within(curve, 0.99, se) is None


def test_trials_per_minute() -> None:
    assert trials_per_minute(curve_of((30, 0.9), (60, 0.9), (90, 0.9))) == pytest.approx(2.0)
    assert math.isnan(trials_per_minute(AnytimeCurve(())))


def test_round_moments_within_the_longest_curve_and_the_median_best_at_each() -> None:
    short, long = curve_of((10, 0.90), (20, 0.95)), curve_of((50, 0.93), (100, 0.97))
    assert moments([short]) == (15,) and moments([short, long]) == (15, 30, 60)
    assert moments([long], most=2) == (30, 60) and moments([curve_of((14, 0.9))]) == () and moments([]) == ()
    # At 15 s only the short search has a model: one of two, so no median yet. At 60 s the
    # short one has ended and counts with its last best.
    none_yet, at_60, at_100 = median_best_at([short, long], (15, 60, 100))
    assert none_yet is None and at_60 == pytest.approx(0.94) and at_100 == pytest.approx(0.96)
