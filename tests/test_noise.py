"""The validation's standard error, against the binomial arithmetic it stands for."""

from __future__ import annotations

import math

import pytest

from mnist_bench.search.noise import binomial_se


def test_near_98_percent_on_5000_images_is_about_two_tenths_of_a_point() -> None:
    assert binomial_se(0.98, 5000) == pytest.approx(math.sqrt(0.98 * 0.02 / 5000))
    assert 0.0019 < binomial_se(0.98, 5000) < 0.0020


def test_a_certain_accuracy_has_no_error_and_bad_input_is_refused() -> None:
    assert binomial_se(1.0, 100) == 0.0 and binomial_se(0.0, 100) == 0.0
    with pytest.raises(ValueError, match="n=0"):
        binomial_se(0.5, 0)
    with pytest.raises(ValueError, match="accuracy=1.5"):
        binomial_se(1.5, 10)
