"""Usage: python docs/stop_probe.py STORAGE [METHOD ...]

What other ``--stop-when-flat`` rules would have done to the searches of a ``mnist-bench
methods`` run (its ``methods.db``): for each method (a study-name prefix such as
``tpe-median``; all four of the full form by default) and each rule, how many of its
finished searches the rule stops, the median share of their wall time it takes (a search it
never stops counts as its whole time) and how many keep a best within one standard error of
their whole search's. The rules: patience = max(MIN, 0.5 x the finished trials up to the
last move) for several MIN, and the shipped one with its patience counted from the end of
the sampler's 10 random start-up trials at the earliest. Last, the bound no rule can beat:
stopping at the first trial whose best is within one standard error of the whole search's
(a rule that knew the future), the median share of the wall time that takes.
"""

import math
import statistics
import sys
from collections.abc import Callable

import optuna

from mnist_bench.search.loop import finished_trials
from mnist_bench.search.stopping import PATIENCE_RATIO, plateau

VAL_SIZE = 5000
RULES = {f"min {m}": (m, 0) for m in (10, 15, 20, 25)} | {"min 10, after start-up": (10, 10)}


def share_of(study: optuna.Study) -> tuple[list, Callable[[int], float]]:
    """A search's finished trials, and the share of its wall time the first k of them took."""
    finished = finished_trials(study)
    ends = {t.number: t.datetime_complete for t in study.trials if t.datetime_complete}
    start = min(t.datetime_start for t in study.trials if t.datetime_complete)
    wall = (max(ends.values()) - start).total_seconds()
    return finished, lambda k: (ends[finished[k - 1][0]] - start).total_seconds() / wall


optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = sys.argv[1]
methods = sys.argv[2:] or ["tpe-median", "tpe-asha-r3", "gp-asha-r3", "random-median"]
names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
for method in methods:
    studies = [optuna.load_study(study_name=n, storage=storage) for n in names if n.startswith(f"{method}-seed")]
    for rule, (least, startup) in RULES.items():
        shares, kept = [], 0
        for study in studies:
            finished, share_at = share_of(study)
            whole = plateau(finished, VAL_SIZE)
            share, best = 1.0, whole.best
            for k in range(1, len(finished) + 1):
                where = plateau(finished[:k], VAL_SIZE)
                if where is None:
                    continue
                anchor = max(where.reached_in, startup)
                if k - anchor >= max(least, math.ceil(PATIENCE_RATIO * anchor)):
                    share, best = share_at(k), where.best
                    break
            shares.append(share)
            kept += whole.best - best <= whole.best_se
        print(f"{method:14s} {rule:22s} median time share {statistics.median(shares):.2f}, kept {kept}/{len(studies)}")
    bound = []
    for study in studies:
        finished, share_at = share_of(study)
        whole = plateau(finished, VAL_SIZE)
        within = (
            k for k in range(1, len(finished) + 1) if whole.best - plateau(finished[:k], VAL_SIZE).best <= whole.best_se
        )
        bound.append(share_at(next(within)))
    shares_text = ", ".join(f"{b:.2f}" for b in bound)
    print(f"{method:14s} {'the bound':22s} median time share {statistics.median(bound):.2f} ({shares_text})")
