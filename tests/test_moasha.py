"""Multi-objective successive halving as pure math, on hand-made objective vectors: where the
rungs are, the fronts, the epsilon-net's order within a front, and how many go on."""

from __future__ import annotations

import pytest

from mnist_bench.search.moasha import Rungs, epsilon_net, fronts, judge, ranking, scaled

ASHA = Rungs(min_resource=1, reduction_factor=3)
ACC_PARAMS = ("maximize", "minimize")  # (accuracy, params), as a search's directions say


def test_rungs_are_optunas_at_1_3_9_27_reports() -> None:
    assert [r for r in range(1, 30) if ASHA.at(r)] == [1, 3, 9, 27]
    assert [r for r in range(1, 60) if Rungs(min_resource=2, reduction_factor=3).at(r)] == [2, 6, 18, 54]
    for bad in (dict(min_resource=0), dict(reduction_factor=1)):
        with pytest.raises(ValueError, match="must be at least"):
            Rungs(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "promoted"), [(1, 1), (2, 1), (3, 1), (5, 1), (6, 2), (10, 3)])
def test_the_promote_count_is_optunas(n: int, promoted: int) -> None:
    """Optuna's SuccessiveHalvingPruner promotes the top n // eta, and at least the best: it
    cannot pause the first trials at a rung until more arrive."""
    assert ASHA.promoted(n) == promoted


def test_a_dominated_point_is_pruned_and_a_lone_trial_goes_on() -> None:
    vectors = [(0.90, 100.0), (0.80, 200.0), (0.70, 50.0)]  # the second is worse in both than the first
    assert fronts([(-a, p) for a, p in vectors]) == [[0, 2], [1]]
    dominated = judge(vectors, ACC_PARAMS, 1, ASHA)
    assert (dominated.rank, dominated.n, dominated.promoted, dominated.goes_on) == (3, 3, 1, False)
    assert judge(vectors, ACC_PARAMS, 0, ASHA).goes_on  # the front's first: best accuracy
    assert not judge(vectors, ACC_PARAMS, 2, ASHA).goes_on  # on the front, but only one of three goes on
    alone = judge([(0.1, 1e9)], ACC_PARAMS, 0, ASHA)
    assert (alone.rank, alone.n, alone.goes_on) == (1, 1, True)


def test_of_two_at_a_rung_only_the_better_goes_on() -> None:
    vectors = [(0.90, 100.0), (0.95, 100.0)]
    assert not judge(vectors, ACC_PARAMS, 0, ASHA).goes_on and judge(vectors, ACC_PARAMS, 1, ASHA).goes_on


def test_the_epsilon_net_spreads_along_the_front_in_scaled_objectives() -> None:
    """Four points on one front: the best accuracy first, then the far end (fewest parameters),
    then the middle, last the one crowding the first; a plain sort by accuracy would keep the
    crowded pair. Unscaled, parameters in the thousands would drown accuracy's hundredths."""
    vectors = [(0.99, 1000.0), (0.98, 900.0), (0.90, 100.0), (0.95, 500.0)]
    assert fronts([(-a, p) for a, p in vectors]) == [[0, 1, 2, 3]]
    assert ranking(vectors, ACC_PARAMS) == [0, 2, 3, 1]
    assert scaled([(-0.99, 1000.0), (-0.90, 100.0)]) == [(0.0, 1.0), (1.0, 0.0)]
    assert scaled([(1.0, 5.0), (1.0, 7.0)]) == [(0.0, 0.0), (0.0, 1.0)]  # an objective all share: 0
    # Ten at the rung, three go on: the front's spread, not the dominated points nor the crowded one.
    dominated = [(0.5 + 0.01 * i, 2000.0 + i) for i in range(6)]
    kept = [judge([*vectors, *dominated], ACC_PARAMS, i, ASHA).goes_on for i in range(10)]
    assert kept == [True, False, True, True] + [False] * 6


def test_epsilon_net_ties_go_to_the_lower_index() -> None:
    points = [(0.0, 1.0), (1.0, 0.0), (0.0, 1.0)]  # 0 and 2 equal: 0 first
    assert epsilon_net(points, [2, 1, 0]) == [0, 1, 2]
    assert epsilon_net([(0.0, 0.5), (1.0, 0.0), (1.0, 1.0)], [2, 0, 1]) == [0, 1, 2]  # 1 and 2 equally far from 0


def test_trials_with_the_same_vector_share_its_best_rank() -> None:
    """As Optuna promotes a value equal to the last one promoted."""
    vectors = [(0.9, 10.0), (0.9, 10.0), (0.5, 20.0)]
    assert [judge(vectors, ACC_PARAMS, i, ASHA).rank for i in range(3)] == [1, 1, 3]


def test_directions_and_three_objectives() -> None:
    """Every objective minimized: the lowest first; (accuracy, latency, params) with a point best
    on latency alone on the front beside the best accuracy."""
    assert ranking([(3.0,), (1.0,), (2.0,)], ("minimize",)) == [1, 2, 0]
    vectors = [(0.9, 2.0, 100.0), (0.8, 1.0, 100.0), (0.8, 2.0, 100.0)]
    assert fronts([(-a, lat, p) for a, lat, p in vectors]) == [[0, 1], [2]]
    assert ranking(vectors, ("maximize", "minimize", "minimize")) == [0, 1, 2]


def test_vectors_must_be_whole_and_finite() -> None:
    with pytest.raises(ValueError, match="need 2 finite objective values"):
        ranking([(0.9, float("nan"))], ACC_PARAMS)
    with pytest.raises(ValueError, match="need 2 finite objective values"):
        ranking([(0.9,)], ACC_PARAMS)
    assert ranking([], ACC_PARAMS) == []
