"""The validation's own noise: what a trial's accuracy can tell apart, and what it cannot.

A validation accuracy p measured on n images is a binomial proportion: its standard error
is sqrt(p (1 - p) / n), about 0.20 points near 98% on 5,000 images. Two trials closer
than that are not told apart by the split that ranked them.
"""

from __future__ import annotations

import math


def binomial_se(accuracy: float, n: int) -> float:
    """The standard error of an ``accuracy`` measured on ``n`` images (0 <= accuracy <= 1)."""
    if n < 1:
        raise ValueError(f"{n=} must be >= 1")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"{accuracy=} must be in [0, 1]")
    return math.sqrt(accuracy * (1.0 - accuracy) / n)
