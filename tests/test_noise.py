"""The validation's standard error, against the binomial arithmetic it stands for."""

from __future__ import annotations

import math

import pytest

from mnist_bench.search.noise import binomial_se, tied_with_best


def test_near_98_percent_on_5000_images_is_about_two_tenths_of_a_point() -> None:
    assert binomial_se(0.98, 5000) == pytest.approx(math.sqrt(0.98 * 0.02 / 5000))
    assert 0.0019 < binomial_se(0.98, 5000) < 0.0020


def test_a_certain_accuracy_has_no_error_and_bad_input_is_refused() -> None:
    assert binomial_se(1.0, 100) == 0.0 and binomial_se(0.0, 100) == 0.0
    with pytest.raises(ValueError, match="n=0"):
        binomial_se(0.5, 0)
    with pytest.raises(ValueError, match="accuracy=1.5"):
        binomial_se(1.5, 10)


def test_a_trial_within_one_standard_error_of_the_difference_is_tied_with_the_best() -> None:
    # On 5,000 images near 98% the difference of two accuracies has a standard error of
    # about 0.28 points: 0.1 points below the best is a tie, 0.3 points is not.
    accuracies = [0.9800, 0.9810, 0.9780, 0.9700]
    assert tied_with_best(accuracies, 5000) == [True, True, False, False]
    # Two standard errors take in the trial 0.3 points below, not the one a point below.
    assert tied_with_best(accuracies, 5000, z=2.0) == [True, True, True, False]
    # The same gaps on 50,000 images are told apart: only the best is left.
    assert tied_with_best(accuracies, 50_000) == [False, True, False, False]


def test_equal_bests_are_tied_and_nothing_is_tied_in_an_empty_study() -> None:
    assert tied_with_best([0.99, 0.99], 100) == [True, True]
    assert tied_with_best([], 100) == []
    with pytest.raises(ValueError, match="z=-1"):
        tied_with_best([0.9], 100, z=-1)
