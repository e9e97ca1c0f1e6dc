"""Usage: python docs/front_probe.py STORAGE STUDY [STUDY ...]

How good is an accuracy-and-time search's Pareto front, and how soon did each search have
it? For each study (objectives accuracy, then a cost to minimize): its wall time (first
trial's start to last trial's end), its trials complete and pruned, and the hypervolume of
its front over the box from (accuracy 0.90, the largest cost any of the studies saw) to
(1.0, 0), with the band the validation's noise puts around it (each front point's accuracy
moved by one binomial standard error, sqrt(p(1-p)/n), down and up). Then the seconds each
study took to reach the lower edge of the first study's band: the "same front within its
noise". The first study is the reference (the unpruned search).
"""

import math
import sys

import optuna
from optuna.trial import TrialState

FLOOR = 0.90  # accuracies below this add nothing: the box's bottom edge


def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (accuracy up, cost down) points, by cost."""
    best, kept = -1.0, []
    for acc, cost in sorted(points, key=lambda p: (p[1], -p[0])):
        if acc > best:
            kept.append((acc, cost))
            best = acc
    return kept


def hypervolume(points: list[tuple[float, float]], cost_ref: float) -> float:
    """The area the front dominates within accuracy [FLOOR, 1] and cost [0, cost_ref], cost in units of cost_ref."""
    area, kept = 0.0, [p for p in front(points) if p[0] > FLOOR and p[1] < cost_ref]
    for i, (acc, cost) in enumerate(kept):
        right = kept[i + 1][1] if i + 1 < len(kept) else cost_ref
        area += (acc - FLOOR) * (right - cost) / cost_ref
    return area


def shifted(points: list[tuple[float, float]], n: int, k: float) -> list[tuple[float, float]]:
    return [(acc + k * math.sqrt(acc * (1 - acc) / n), cost) for acc, cost in points]


optuna.logging.set_verbosity(optuna.logging.WARNING)
storage, names = sys.argv[1], sys.argv[2:]
studies = [optuna.load_study(study_name=name, storage=storage) for name in names]
cost_ref = max(t.values[1] for s in studies for t in s.get_trials(states=(TrialState.COMPLETE,)))
reference_low = None
for study in studies:
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    start = min(t.datetime_start for t in trials)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.datetime_complete)
    wall = (max(t.datetime_complete for t in trials) - start).total_seconds()
    n_val = int(study.user_attrs.get("val_size", 5000))
    points = [(t.values[0], t.values[1]) for t in done]
    hv = hypervolume(points, cost_ref)
    low, high = hypervolume(shifted(points, n_val, -1), cost_ref), hypervolume(shifted(points, n_val, 1), cost_ref)
    if reference_low is None:
        reference_low = low
    reached = None
    for i in range(1, len(done) + 1):  # the anytime front: after each completed trial
        if hypervolume(points[:i], cost_ref) >= reference_low:
            reached = (done[i - 1].datetime_complete - start).total_seconds()
            break
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    print(
        f"{study.study_name}: {wall:.0f} s wall, {len(done)} complete, {pruned} pruned; front of {len(front(points))}, "
        f"hypervolume {hv:.4f} (noise band {low:.4f}-{high:.4f}); reached the reference's lower edge "
        + ("never" if reached is None else f"at {reached:.0f} s ({reached / wall:.0%} of its wall time)")
    )
