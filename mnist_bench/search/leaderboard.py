"""A study's trials as one ranked table, and the files written next to the study."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.search.loop import pareto_numbers
from mnist_bench.search.space import SearchSpace, sample_config

FORMATS = ("table", "csv", "markdown", "json")
COLUMNS = [
    "rank", "trial", "state", "layers", "optimizer", "lr", "momentum", "batch_size",
    "dropout", "weight_decay", "schedule", "label_smoothing", "augment", "max_norm",
    "epochs_run", "best_val_acc", "final_val_acc", "train_time_s", "samples_per_s",
    "n_params", "latency_ms", "pareto", "train_seed", "retry_of", "reason",
]  # fmt: skip
# Complete trials rank first, then pruned ones (fewer epochs, not comparable), then the rest.
_STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}


def trial_row(trial: FrozenTrial, space: SearchSpace) -> dict[str, Any]:
    """One trial as a flat dict; its config rebuilt from the stored params."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "trial": trial.number,
        "state": trial.state.name,
        "epochs_run": attrs.get("epochs_run", 0),
        "best_val_acc": attrs.get("best_val_acc", math.nan),
        "final_val_acc": attrs.get("final_val_acc", math.nan),
        "train_time_s": attrs.get("train_time_s", math.nan),
        "samples_per_s": attrs.get("samples_per_s", math.nan),
        "latency_ms": attrs.get("latency_ms", math.nan),
        "train_seed": attrs.get("train_seed"),
        # Set by Optuna when this trial re-runs the parameters of a stale (crashed) one.
        "retry_of": trial.system_attrs.get("failed_trial"),
        "reason": attrs.get("reason", ""),
    }
    try:
        config = sample_config(optuna.trial.FixedTrial(trial.params), space, epochs=1, seed=0)
    except ValueError:  # params incomplete: the trial died while they were being chosen
        return row
    summary = config.summary()
    row.update({key: summary[key] for key in COLUMNS if key in summary})
    return row


def leaderboard(study: optuna.Study, space: SearchSpace) -> pd.DataFrame:
    """Every trial of the study (pruned, failed and running too), best first."""
    trials = study.get_trials(deepcopy=False)
    ordered = sorted(
        trials,
        key=lambda t: (
            _STATE_ORDER.get(t.state, 2),
            -(t.user_attrs.get("best_val_acc") or -1.0),
            t.number,
        ),
    )
    front = pareto_numbers(study)
    rows = [{**trial_row(t, space), "pareto": t.number in front} for t in ordered]
    frame = pd.DataFrame(rows, columns=COLUMNS[1:])
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.astype({"rank": int, "trial": int})


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def export(frame: pd.DataFrame, fmt: str) -> str:
    """The leaderboard as text in a file format: csv, markdown or json (records)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "markdown":
        return to_markdown(frame)
    if fmt == "json":
        return frame.to_json(orient="records", indent=2) + "\n"
    raise ValueError(f"format={fmt!r} must be csv, markdown or json")


def study_dir(studies_dir: Path, study_name: str) -> Path:
    """Where a study's files go: ``studies/<study>/``."""
    return Path(studies_dir) / study_name


def write_leaderboard(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "leaderboard.csv", out_dir / "leaderboard.md"]
    for path, fmt in zip(paths, ("csv", "markdown"), strict=True):
        path.write_text(export(frame, fmt))
    return paths
