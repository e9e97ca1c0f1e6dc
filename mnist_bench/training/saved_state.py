"""What a saved training state holds, read in every layout a version wrote it in.

``Training.save_state`` writes the current layout; ``Training.resume`` reads any, through
these: states saved by 0.1.0 and 0.2.0 (``final``'s per-seed states of a long retrain)
resume here with the same numbers, only laid out differently.
"""

from __future__ import annotations

from typing import Any

from mnist_bench.config import TrainConfig


def saved_config(values: Any) -> TrainConfig | None:
    """The config a saved state was written for (None if it cannot be read as one).

    States saved before configs had one codec (by 0.1.0 and 0.2.0) hold it as
    ``dataclasses.asdict`` gave it: the model's fields nested under ``model``."""
    if not isinstance(values, dict):
        return None
    if isinstance(values.get("model"), dict):
        values = {**values["model"], **{k: v for k, v in values.items() if k != "model"}}
    try:
        return TrainConfig.from_dict(values)
    except (KeyError, TypeError, ValueError):
        return None


def current_runner_state(saved: dict[str, Any], n_params: int) -> dict[str, Any]:
    """A runner's state in the form runners restore, also from the layout 0.1.0 and 0.2.0
    saved before the eager and graphed runners shared one step: the eager runner saved
    torch's optimizer and scheduler state dicts, the graphed one per-parameter state, SGD
    buffers and step counters. The numbers are the same; only the layout moved."""
    if "update" in saved:
        return saved
    if "schedule" in saved:  # that layout's eager runner
        per_param = saved["optimizer"]["state"]
        schedule = saved["schedule"]
        update = [dict(per_param.get(i, {})) for i in range(n_params)]
        return {"update": update, "rates": {"step": schedule["last_epoch"] if schedule else 0}}
    buffers = saved["sgd_buffers"]  # that layout's graphed runner
    update = [{"momentum_buffer": b} for b in buffers] if buffers else saved["optimizer"] or [{}] * n_params
    return {"update": update, "rates": {"step": max(int(saved["step_no"]), int(saved["host_step"]))}}
