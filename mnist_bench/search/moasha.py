"""Multi-objective successive halving: which trials go on past a rung, from their objective vectors.

Optuna's pruners judge one value a report, and Optuna refuses reports in a study of several
objectives, so the search loop judges those studies itself, by this math: multi-objective
asynchronous successive halving (Schmucker et al. 2021; Syne Tune's MOASHA).

- Rungs as Optuna's SuccessiveHalvingPruner places them: at ``min_resource * eta**k``
  reports, k = 0, 1, ... (1, 3, 9, 27, ... for the ``asha`` pruner).
- At a rung, the objective vectors of every trial that reached it are ranked: front after
  front of a non-dominated sort, and within a front in an epsilon-net's order (objectives
  scaled to the rung's range; first the point best on the first objective, then each time
  the one farthest from those already picked), so the first places go to points spread
  along the front rather than crowded at one end of it.
- A trial goes on only if its rank is within the top ``max(1, n // eta)`` of the ``n`` at
  the rung, itself included: Optuna's count, so while fewer than ``2 * eta`` trials have
  reached a rung each must rank first there to go on.

Pure functions of plain tuples: nothing here reads a study, a trial or a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["maximize", "minimize"]
Vector = Sequence[float]  # one trial's value of each objective, in the study's order


@dataclass(frozen=True)
class Rungs:
    """Where successive halving judges a trial, and how many of those judged there go on."""

    min_resource: int = 1  # reports before the first rung
    reduction_factor: int = 3  # eta: each rung is eta times as far as the one before, and keeps the top 1/eta

    def __post_init__(self) -> None:
        if self.min_resource < 1:
            raise ValueError(f"{self.min_resource=} must be at least 1")
        if self.reduction_factor < 2:
            raise ValueError(f"{self.reduction_factor=} must be at least 2")

    def at(self, report: int) -> bool:
        """Whether report ``report`` (counted from 1) is a rung."""
        rung = self.min_resource
        while rung < report:
            rung *= self.reduction_factor
        return rung == report

    def promoted(self, n: int) -> int:
        """How many of ``n`` trials at a rung go on, as Optuna's SuccessiveHalvingPruner counts:
        the top ``n // eta``, and never fewer than one (it cannot pause a trial until more arrive)."""
        if n < 1:
            raise ValueError(f"{n=} trials at a rung: at least the one judged")
        return max(1, n // self.reduction_factor)


@dataclass(frozen=True)
class Verdict:
    """One trial judged at a rung."""

    rank: int  # its place among those at the rung, from 1
    n: int  # trials at the rung, itself included
    promoted: int  # how many of them go on

    @property
    def goes_on(self) -> bool:
        return self.rank <= self.promoted


def as_costs(vectors: Sequence[Vector], directions: Sequence[Direction]) -> list[tuple[float, ...]]:
    """Each vector with every objective turned into a cost, lower better (a maximized one negated)."""
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    costs = []
    for vector in vectors:
        if len(vector) != len(signs) or not all(math.isfinite(v) for v in vector):
            raise ValueError(f"{tuple(vector)}: need {len(signs)} finite objective values")
        costs.append(tuple(sign * v for sign, v in zip(signs, vector, strict=True)))
    return costs


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether cost vector ``a`` dominates ``b``: no worse in any objective, better in one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def fronts(costs: Sequence[Sequence[float]]) -> list[list[int]]:
    """The indices of ``costs`` front by front, the non-dominated first (a fast non-dominated
    sort: one comparison per pair, then each front peeled off the last); each front in index order."""
    n = len(costs)
    beaten_by = [0] * n  # how many points dominate each
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(costs[i], costs[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(costs[j], costs[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    front = [i for i in range(n) if beaten_by[i] == 0]
    result = []
    while front:
        result.append(front)
        after = []
        for i in front:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    after.append(j)
        front = sorted(after)
    return result


def scaled(costs: Sequence[Sequence[float]]) -> list[tuple[float, ...]]:
    """``costs`` with each objective scaled to [0, 1] over these points (0 where all are equal),
    so that no objective's unit (parameters in millions, accuracy in fractions) outweighs another."""
    lows = [min(column) for column in zip(*costs, strict=True)]
    highs = [max(column) for column in zip(*costs, strict=True)]
    return [
        tuple((c - lo) / (hi - lo) if hi > lo else 0.0 for c, lo, hi in zip(point, lows, highs, strict=True))
        for point in costs
    ]


def epsilon_net(points: Sequence[Sequence[float]], members: Sequence[int]) -> list[int]:
    """``members`` (indices of ``points``) in an epsilon-net's order: first the one best on the
    first objective (the rest break its ties), then again and again the one farthest from
    those picked (its distance: to the nearest picked); ties go to the lower index."""
    left = sorted(members)
    if not left:
        return []
    first = min(left, key=lambda i: (tuple(points[i]), i))
    order = [first]
    left.remove(first)
    nearest = {i: math.dist(points[i], points[first]) for i in left}
    while left:
        pick = max(left, key=lambda i: (nearest[i], -i))
        order.append(pick)
        left.remove(pick)
        for i in left:
            nearest[i] = min(nearest[i], math.dist(points[i], points[pick]))
    return order


def ranking(vectors: Sequence[Vector], directions: Sequence[Direction]) -> list[int]:
    """The indices of ``vectors``, best first: front by front, each front in its epsilon-net's
    order, distances in objectives scaled to the range of all ``vectors``."""
    if not vectors:
        return []
    costs = as_costs(vectors, directions)
    points = scaled(costs)
    return [i for front in fronts(costs) for i in epsilon_net(points, front)]


def judge(vectors: Sequence[Vector], directions: Sequence[Direction], index: int, rungs: Rungs) -> Verdict:
    """Whether the trial of ``vectors[index]`` goes on past the rung that ``vectors`` (one per
    trial that reached it, its own included) were reported at.

    Its rank is the place of the first point equal to its own: trials with the same vector
    share the best place any of them has, as Optuna's pruner promotes a value equal to the
    last one promoted.
    """
    order = ranking(vectors, directions)
    own = tuple(vectors[index])
    rank = 1 + next(place for place, i in enumerate(order) if tuple(vectors[i]) == own)
    return Verdict(rank=rank, n=len(vectors), promoted=rungs.promoted(len(vectors)))
