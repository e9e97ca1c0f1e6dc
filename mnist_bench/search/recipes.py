"""A stored trial as a speedrun recipe: how `speedrun --study S --trial N` re-finds one.

The recipe is the trial's own config (its drawn epochs, where its space draws them) and
precision, rebuilt by the same ``sample_config`` the search used (``loop.trial_config``);
its provenance names the search that stored the trial (``search_command``) and the
speedrun that chose and measured it.
"""

from __future__ import annotations

from dataclasses import replace

import optuna

from mnist_bench.search.loop import pick_trial, stored_space, trial_config, trial_precision
from mnist_bench.search.records import StudyRecord
from mnist_bench.search.space import load_space, shipped_names
from mnist_bench.speedrun.recipe import Recipe, target_text


def space_name(study: optuna.Study) -> str | None:
    """The shipped space a study searches, by name; None for a space of a user's own file."""
    space = stored_space(study)
    return next((name for name in shipped_names() if load_space(name) == space), None)


def search_command(study: optuna.Study) -> str:
    """The search that made ``study``, as a command, from what the study stored of it."""
    record = StudyRecord.of(study)
    name = space_name(study)
    parts = ["mnist-bench search", f"--space {name}" if name else "--space (a file of its own)"]
    if len(record.objectives) > 1:
        parts.append(f"--objective {','.join(record.objectives)}")
    if record.sampler is not None:
        parts.append(f"--sampler {record.sampler}")
    if record.pruner is not None:
        parts.append(f"--pruner {record.pruner}")
    if record.seed is not None:
        parts.append(f"--seed {record.seed}")
    parts.append(f"--trials {len(study.trials)} --study {study.study_name}")
    return " ".join(parts)


def trial_recipe(study: optuna.Study, number: int | None, *, target: float, device_kind: str) -> Recipe:
    """Trial ``number`` of ``study`` (its best trial when None) as a recipe for ``target`` on ``device_kind``."""
    trial = pick_trial(study, number).trial
    config = replace(trial_config(study, trial), seed=0)  # each run sets its own: the trial's is not the recipe's
    name = f"{device_kind}-{target_text(target)}"
    return Recipe(name, target, device_kind, config, precision=trial_precision(study, trial, "fp32"))
