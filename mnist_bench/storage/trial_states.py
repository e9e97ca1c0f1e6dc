"""Which of a study's trials count: finished ones, and those that will count once done.

Read by the search loops (--trials is a count of finished trials), the heartbeat
recovery and the report; trials of crashed workers are failed first, so they do not
hold a place for ever.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping

import optuna
from optuna.trial import TrialState

# Finished trials count towards --trials; FAIL ones do not (they are retried by design).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Trials that will count once done: a new trial runs only while fewer than --trials of
# these come before it, so concurrent workers stop at exactly --trials. (WAITING trials,
# queued parameters, are what the next ask picks up: they hold no place of their own.)
UNDERWAY = (*FINISHED, TrialState.RUNNING)
# How each state reads in a line, in this order: the first three always, the others when
# there are any.
_STATE_WORDS = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}


def state_counts(study: optuna.Study) -> Counter[str]:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def counts_text(counts: Mapping[str, int]) -> str:
    """``state_counts`` in words: '12 complete, 3 pruned, 0 failed' (running and waiting
    only when there are any)."""
    return ", ".join(
        f"{counts.get(state, 0)} {word}"
        for state, word in _STATE_WORDS.items()
        if counts.get(state) or state in ("COMPLETE", "PRUNED", "FAIL")
    )


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def n_underway(study: optuna.Study) -> int:
    """Finished trials plus running ones: what --trials will count once they are done.

    Trials of crashed workers that missed their heartbeats are failed (and queued
    again) first, so they do not hold a place for ever.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return len(study.get_trials(deepcopy=False, states=UNDERWAY))
