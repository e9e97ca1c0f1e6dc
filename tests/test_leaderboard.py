from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from rich.console import Console

from mnist_bench.output.console import leaderboard_table, trial_line
from mnist_bench.search.leaderboard import (
    COLUMNS,
    leaderboard,
    leaderboard_text,
    tied_at_top,
    trial_row,
    write_leaderboard,
)
from mnist_bench.search.noise import binomial_se
from mnist_bench.search.space import SearchSpace, sample_config

SPACE = SearchSpace()


# What a trial on CUDA stores when its update cannot be captured (an entry with float rates).
EAGER = "RuntimeError: Attempting CUDA graph capture of step() for an instance of RMSprop but capturable is False"


def fake_study(*, eager_reason: str | None = None, val_size: int | None = None) -> optuna.Study:
    """Trials told by hand: the leaderboard reads stored params and attrs, not training.
    ``eager_reason``: what trial 1 (the best) stored as why its steps ran eagerly;
    ``val_size``: the study's validation images, as mnist-bench stores them (none: a study it did not create)."""
    study = optuna.create_study(direction="maximize")
    if val_size is not None:
        study.set_user_attr("val_size", val_size)
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


def test_each_accuracy_carries_its_standard_error_and_ties_with_the_best_are_marked() -> None:
    """0.97 and 0.95 on 100 images are 2 points apart, within the 2.8 points their difference
    may be off by: tied. On 10,000 images they are told apart. The pruned trial is never tied."""
    frame = leaderboard(fake_study(val_size=100), SPACE)
    assert frame["val_se"].iloc[:3].tolist() == pytest.approx(
        [binomial_se(0.97, 100), binomial_se(0.95, 100), binomial_se(0.99, 100)]
    )
    assert frame["tied"].tolist() == [True, True, False, False]
    ties = tied_at_top(frame, 100)
    assert ties is not None and ties.trials == (1, 0) and ties.promote_best == 2 and ties.best == 0.97
    told_apart = leaderboard(fake_study(val_size=10_000), SPACE)
    assert told_apart["tied"].tolist() == [True, False, False, False] and tied_at_top(told_apart, 10_000) is None
    unknown = leaderboard(fake_study(), SPACE)  # no validation size stored: nothing to judge by
    assert unknown["val_se"].isna().all() and not unknown["tied"].any()


def test_every_rendering_shows_the_standard_error_and_the_ties() -> None:
    frame = leaderboard(fake_study(val_size=100), SPACE)
    records = json.loads(leaderboard_text(frame, "json"))
    assert records[0]["tied"] is True and records[0]["val_se"] == pytest.approx(binomial_se(0.97, 100))
    assert "best_val_acc,val_se,tied" in leaderboard_text(frame, "csv").splitlines()[0]
    markdown = leaderboard_text(frame, "markdown").splitlines()
    assert "| 0.9700 ± 0.0171 | = |" in markdown[2] and "| 0.9500 ± 0.0218 | = |" in markdown[3]
    assert "| 0.9900 ± 0.0099 |  |" in markdown[4]  # the pruned trial: its figure, no tie
    out = io.StringIO()
    Console(file=out, width=250).print(leaderboard_table(frame, title="ties"))
    text = out.getvalue()
    assert "val acc ± se" in text and "0.9700 ± 0.0171" in text and "=: tied with the best" in text
    assert [line.split("│")[2].strip() for line in text.splitlines() if "COMPLETE" in line] == ["=", "="]
    alone = io.StringIO()  # a best tied with no other: no column, no caption
    Console(file=alone, width=250).print(leaderboard_table(leaderboard(fake_study(val_size=10_000), SPACE)))
    assert "tied with the best" not in alone.getvalue() and "┃ = ┃" not in alone.getvalue()


def test_a_multi_objective_study_marks_no_ties() -> None:
    """Its trials are ranked by a front, not by one best: no trial is tied with "the" best."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("val_size", 100)
    for acc in (0.97, 0.96):
        trial = study.ask()
        sample_config(trial, SPACE, epochs=1, seed=0)
        trial.set_user_attr("best_val_acc", acc)
        study.tell(trial, [acc, 1.0])
    frame = leaderboard(study, SPACE)
    assert not frame["tied"].any() and frame["val_se"].notna().all()
