"""The best's last move beyond the noise, and the rule --stop-when-flat stops by, on hand-made
sequences of finished trials: (trial number, accuracy), None for a pruned trial."""

from __future__ import annotations

import pytest

from mnist_bench.search.noise import binomial_se
from mnist_bench.search.stopping import MIN_PATIENCE, flat_stop, patience, plateau

N = 5000  # validation images: the standard error near 98% is about 0.2 points


def test_no_best_without_a_complete_trial() -> None:
    assert plateau([], N) is None
    assert plateau([(0, None), (1, None)], N) is None
    assert flat_stop([(n, None) for n in range(50)], N) is None
    with pytest.raises(ValueError, match="val_size=0"):
        plateau([(0, 0.9)], 0)


def test_the_first_best_is_a_move() -> None:
    where = plateau([(0, 0.95)], N)
    assert where is not None
    assert (where.best, where.best_trial, where.moved_at, where.reached_in, where.flat_for) == (0.95, 0, 0, 1, 0)
    assert where.best_se == binomial_se(0.95, N) and where.val_size == N


def test_a_new_best_within_the_noise_is_not_a_move() -> None:
    where = plateau([(0, 0.9800), (1, 0.9810), (2, 0.9805)], N)
    assert where is not None
    assert (where.best, where.best_trial) == (0.9810, 1)  # the best moved, by less than its noise
    assert (where.moved_at, where.reached_in, where.flat_for) == (0, 1, 2)


def test_small_steps_move_once_together_they_clear_the_noise() -> None:
    # 0.9815 is within 0.20 points of 0.9800; 0.9830 is not, though it is within the noise of
    # 0.9815: a move is judged against the best at the last move, so creeping adds up.
    where = plateau([(0, 0.9800), (1, 0.9815), (2, 0.9830), (3, 0.9700)], N)
    assert where is not None
    assert (where.best_trial, where.moved_at, where.reached_in, where.flat_for) == (2, 2, 3, 1)


def test_pruned_trials_count_as_finished_but_hold_no_best() -> None:
    # A pruned trial trained fewer epochs: even a higher figure is not the best.
    where = plateau([(0, 0.97), (1, None), (3, None), (4, 0.96)], N)
    assert where is not None
    assert (where.best, where.moved_at, where.reached_in, where.flat_for) == (0.97, 0, 1, 3)
    # Numbers may skip (failed trials are not finished): positions count, numbers name.
    later = plateau([(0, 0.90), (2, None), (5, 0.95), (9, 0.94)], N)
    assert later is not None and (later.moved_at, later.reached_in, later.flat_for) == (5, 3, 1)


def test_patience_has_a_floor_and_grows_with_the_trials_a_move_took() -> None:
    assert patience(1) == patience(20) == MIN_PATIENCE == 10
    assert patience(21) == 11 and patience(40) == 20


def test_the_search_stops_once_the_best_is_flat_for_its_patience() -> None:
    early = [(0, 0.90), (1, 0.95)]  # a move reached in 2 finished trials: patience 10
    flat = [(n, 0.94) for n in range(2, 11)]  # 9 flat trials, one short
    assert flat_stop(early + flat, N) is None
    stop = flat_stop([*early, *flat, (11, 0.951)], N)  # a 10th, within the noise of the best
    assert stop is not None
    assert (stop.patience, stop.finished, stop.plateau.flat_for) == (10, 12, 10)
    assert (stop.plateau.best, stop.plateau.best_trial, stop.plateau.moved_at) == (0.951, 11, 1)


def test_a_move_found_late_earns_a_longer_wait() -> None:
    climb = [(n, 0.80 + 0.006 * n) for n in range(30)]  # every trial a move: the last reached in 30
    flat = [(30 + n, None) for n in range(14)]
    assert flat_stop(climb + flat, N) is None  # patience 15 = 0.5 x 30
    stop = flat_stop([*climb, *flat, (44, 0.5)], N)
    assert stop is not None and stop.patience == 15 and stop.plateau.moved_at == 29


def test_a_move_resets_the_wait() -> None:
    sequence = [(0, 0.95)] + [(n, 0.94) for n in range(1, 10)] + [(10, 0.97)]
    assert flat_stop(sequence, N) is None  # 9 flat, then a move: the wait starts again
    where = plateau(sequence, N)
    assert where is not None and (where.moved_at, where.flat_for) == (10, 0)
