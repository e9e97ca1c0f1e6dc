"""A study's trials as one ranked table, and the files written next to the study."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.search.loop import pareto_numbers
from mnist_bench.search.noise import binomial_se, tied_with_best
from mnist_bench.search.records import StudyRecord, TrialRecord
from mnist_bench.search.space import SearchSpace, sample_config

FORMATS = ("table", "csv", "markdown", "json")
COLUMNS = [
    "rank", "trial", "state", "layers", "optimizer", "lr", "momentum", "batch_size",
    "dropout", "weight_decay", "schedule", "label_smoothing", "augment", "max_norm",
    "epochs_run", "epochs_trained", "best_val_acc", "val_se", "tied", "final_val_acc", "train_time_s", "samples_per_s",
    "n_params", "latency_ms", "pareto", "train_seed", "retry_of", "streams", "reason", "eager_reason",
]  # fmt: skip
# ``val_se``: the binomial standard error of best_val_acc on the study's validation images.
# ``tied``: a complete trial within the validation's noise of the best (``noise.tied_with_best``;
# the best included); False for the rest, and for every trial of a multi-objective study,
# whose trials are ranked by a front, not by one best.
# ``epochs_trained``: ``epochs_run`` plus the part of an epoch a pruner stopped it in.
# ``streams``: the version of the random streams the trial trained with (STREAMS_VERSION);
# a study resumed with --mixed-versions holds more than one. ``eager_reason``: on CUDA, why
# the trial's steps ran eagerly rather than as a captured graph (empty where they did not).
# Complete trials rank first, then pruned ones (fewer epochs, not comparable), then the rest.
_STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}


def or_nan(value: float | None) -> float:
    """A stored figure a trial may lack (None) as a float for a table or a plot: NaN."""
    return math.nan if value is None else value


def trial_row(trial: FrozenTrial, space: SearchSpace, *, streams: str | None = None) -> dict[str, Any]:
    """One trial as a flat dict; its config rebuilt from the stored params.

    ``streams``: the random streams to show for a trial that did not record its own (the study's).
    """
    record = TrialRecord.of(trial)
    row: dict[str, Any] = {
        "trial": record.number,
        "state": record.state.name,
        "epochs_run": record.epochs_run or 0,
        "epochs_trained": or_nan(record.epochs_trained),
        "best_val_acc": or_nan(record.accuracy),
        "final_val_acc": or_nan(record.final_accuracy),
        "train_time_s": or_nan(record.train_time_s),
        "samples_per_s": or_nan(record.samples_per_s),
        "latency_ms": or_nan(record.latency_ms),
        "train_seed": record.train_seed,
        "retry_of": record.retry_of,
        "streams": record.streams_version or streams,
        "reason": record.reason,
        "eager_reason": record.eager_reason,
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
    accuracy = {t.number: TrialRecord.of(t).accuracy for t in trials}
    ordered = sorted(
        trials,
        key=lambda t: (_STATE_ORDER.get(t.state, 2), -(accuracy[t.number] or -1.0), t.number),
    )
    front = pareto_numbers(study)
    record = StudyRecord.of(study)
    rows = [{**trial_row(t, space, streams=record.streams_version), "pareto": t.number in front} for t in ordered]
    frame = pd.DataFrame(rows, columns=COLUMNS[1:])
    frame.insert(0, "rank", range(1, len(frame) + 1))
    frame = frame.astype({"rank": int, "trial": int})
    if record.val_size is not None:
        frame["val_se"] = [
            math.nan if math.isnan(a) else binomial_se(a, record.val_size) for a in frame["best_val_acc"]
        ]
    frame["tied"] = False
    complete = (frame["state"] == TrialState.COMPLETE.name) & frame["best_val_acc"].notna()
    if len(study.directions) == 1 and record.val_size is not None and complete.any():
        frame.loc[complete, "tied"] = tied_with_best(frame.loc[complete, "best_val_acc"].tolist(), record.val_size)
    return frame.astype({"tied": bool})


@dataclass(frozen=True)
class Ties:
    """The complete trials tied with a leaderboard's best (its ``tied`` column), where there are several."""

    trials: tuple[int, ...]  # their numbers, best first
    # ``promote --best N`` that trains them all again: the lowest rank among them (which,
    # for accuracies within a hair of 1.0 on few images, may take in an untied trial too).
    promote_best: int
    best: float  # the best's accuracy
    best_se: float  # its standard error
    val_size: int  # validation images it was measured on


def tied_at_top(frame: pd.DataFrame, val_size: int | None) -> Ties | None:
    """The ties of a ``leaderboard`` frame measured on ``val_size`` images; None unless two or more."""
    tied = frame[frame["tied"]]
    if val_size is None or len(tied) < 2:
        return None
    top = tied.iloc[0]
    return Ties(
        trials=tuple(int(n) for n in tied["trial"]),
        promote_best=int(tied["rank"].max()),
        best=float(top["best_val_acc"]),
        best_se=float(top["val_se"]),
        val_size=val_size,
    )


def accuracy_text(accuracy: float, se: float) -> str:
    """An accuracy with its standard error, as people read it: '0.9810 ± 0.0019' ('-' for none)."""
    if math.isnan(accuracy):
        return "-"
    return f"{accuracy:.4f}" if math.isnan(se) else f"{accuracy:.4f} ± {se:.4f}"


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A leaderboard as people read it (Markdown, HTML): each accuracy with its ± standard
    error in one cell, and '=' for the trials tied with the best. CSV and JSON keep the columns."""
    shown = frame.drop(columns=["val_se"])
    shown["best_val_acc"] = [accuracy_text(a, se) for a, se in zip(frame["best_val_acc"], frame["val_se"], strict=True)]
    shown["tied"] = ["=" if t else "" for t in frame["tied"]]
    return shown


def has_eager_reason(frame: pd.DataFrame) -> bool:
    """Whether some trial of a leaderboard trained eagerly for a reason (on CUDA): where none
    did (every trial graphed, or a CPU's), renderings leave the empty column out."""
    return "eager_reason" in frame and bool(frame["eager_reason"].notna().any())


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


def leaderboard_text(frame: pd.DataFrame, fmt: str) -> str:
    """The leaderboard as text in a file format: csv, markdown or json (records)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "markdown":
        return to_markdown(readable(frame))
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
        path.write_text(leaderboard_text(frame, fmt))
    return paths
