"""The validation's own noise: what a trial's accuracy can tell apart, and what it cannot.

A validation accuracy p measured on n images is a binomial proportion: its standard error
is sqrt(p (1 - p) / n), about 0.20 points near 98% on 5,000 images. Two trials closer
than that are not told apart by the split that ranked them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def binomial_se(accuracy: float, n: int) -> float:
    """The standard error of an ``accuracy`` measured on ``n`` images (0 <= accuracy <= 1)."""
    if n < 1:
        raise ValueError(f"{n=} must be >= 1")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"{accuracy=} must be in [0, 1]")
    return math.sqrt(accuracy * (1.0 - accuracy) / n)


def tied_with_best(accuracies: Sequence[float], n: int, *, z: float = 1.0) -> list[bool]:
    """Which of ``accuracies`` (each measured on the same ``n`` images) are tied with the best.

    A trial is tied when best - accuracy <= z * sqrt(se_best² + se_trial²): the gap is within
    ``z`` standard errors of a difference of two independent proportions (z = 1: one). The
    validation images are the same for every trial, so their errors are correlated and the
    true standard error of the difference is smaller: this rule errs toward calling trials
    tied, which is the safe side when the remedy for a tie is to train the tied trials longer.
    The best is tied with itself; an empty input has no ties.
    """
    if z < 0:
        raise ValueError(f"{z=} must be >= 0")
    if not accuracies:
        return []
    best = max(accuracies)
    se_best = binomial_se(best, n)
    return [best - acc <= z * math.hypot(se_best, binomial_se(acc, n)) for acc in accuracies]
