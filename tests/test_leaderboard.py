from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pandas as pd
from rich.console import Console

from mnist_bench.output.console import leaderboard_table, trial_line
from mnist_bench.search.leaderboard import COLUMNS, leaderboard, leaderboard_text, trial_row, write_leaderboard
from mnist_bench.search.space import SearchSpace, sample_config

SPACE = SearchSpace()


# What a trial on CUDA stores when its update cannot be captured (an entry with float rates).
EAGER = "RuntimeError: Attempting CUDA graph capture of step() for an instance of RMSprop but capturable is False"


def fake_study(*, eager_reason: str | None = None) -> optuna.Study:
    """Trials told by hand: the leaderboard reads stored params and attrs, not training.
    ``eager_reason``: what trial 1 (the best) stored as why its steps ran eagerly."""
    study = optuna.create_study(direction="maximize")
    fixed = {"n_layers": 1, "width_0": 128, "optimizer": "adam", "adam_lr": 1e-3, "batch_size": 64}
    for acc, state in [(0.95, "COMPLETE"), (0.97, "COMPLETE"), (0.99, "PRUNED"), (None, "FAIL")]:
        study.enqueue_trial(fixed)
        trial = study.ask()
        sample_config(trial, SPACE, epochs=1, seed=0)
        if eager_reason is not None and trial.number == 1:
            trial.set_user_attr("eager_reason", eager_reason)
        if acc is not None:
            trial.set_user_attr("best_val_acc", acc)
            trial.set_user_attr("epochs_run", 2)
        if state == "COMPLETE":
            study.tell(trial, acc)
        elif state == "PRUNED":
            trial.set_user_attr("reason", "pruned by median pruner after epoch 1")
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return study


def test_complete_trials_rank_first_by_accuracy() -> None:
    frame = leaderboard(fake_study(), SPACE)
    assert list(frame.columns) == COLUMNS
    assert frame["trial"].tolist() == [1, 0, 2, 3]
    assert frame["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert frame["rank"].tolist() == [1, 2, 3, 4]
    assert frame.loc[0, "layers"] == "784-128-10" and frame.loc[0, "optimizer"] == "adam"
    assert frame.loc[0, "n_params"] == 784 * 128 + 128 + 128 * 10 + 10


def test_exports_load_back_in_pandas(tmp_path: Path) -> None:
    frame = leaderboard(fake_study(), SPACE)
    csv_path, md_path = write_leaderboard(frame, tmp_path / "study")
    back = pd.read_csv(csv_path)
    assert back["trial"].tolist() == frame["trial"].tolist()
    assert back["best_val_acc"].iloc[0] == 0.97
    records = json.loads(leaderboard_text(frame, "json"))
    assert records[0]["trial"] == 1 and len(records) == 4
    lines = md_path.read_text().splitlines()
    assert lines[0].startswith("| rank | trial | state |") and len(lines) == 2 + 4
    assert "pruned by median" in lines[4]


def test_rich_table_renders_into_a_fixed_width_console() -> None:
    frame = leaderboard(fake_study(), SPACE)
    out = io.StringIO()
    Console(file=out, width=200).print(leaderboard_table(frame, top=2, title="best"))
    text = out.getvalue()
    assert "784-128-10" in text and "0.9700" in text and "PRUNED" not in text


def test_a_trial_that_trained_eagerly_says_why_in_the_table_and_its_line() -> None:
    """On CUDA a trial whose update cannot be captured trains eagerly: its reason is a column
    of the leaderboard, of the table on screen, and of its line. A table where no trial has
    one (every CPU's) keeps its width."""
    frame = leaderboard(fake_study(eager_reason=EAGER), SPACE)
    assert frame["eager_reason"].fillna("").tolist() == [EAGER, "", "", ""]  # trial 1 ranks first
    assert EAGER in leaderboard_text(frame, "csv")
    out = io.StringIO()
    Console(file=out, width=400).print(leaderboard_table(frame))
    assert "eager because" in out.getvalue() and "capturable is False" in out.getvalue()
    row = trial_row(fake_study(eager_reason=EAGER).trials[1], SPACE)
    assert trial_line(row, 0.97).endswith(f"  (eager: {EAGER})  [best 0.9700]")
    plain = io.StringIO()
    Console(file=plain, width=400).print(leaderboard_table(leaderboard(fake_study(), SPACE)))
    assert "eager" not in plain.getvalue()
    assert "eager" not in trial_line(trial_row(fake_study().trials[1], SPACE), None)
