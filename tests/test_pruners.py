"""The pruner registry: each entry builds its pruner, its steps counted in reports; an
unknown name is an error, never no pruning."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from mnist_bench.cli import app
from mnist_bench.search.loop import open_study
from mnist_bench.search.pruners import NO_PRUNER, PRUNERS, make_pruner, pruner_spec
from mnist_bench.search.records import TrialRecord
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SearchSettings
from mnist_bench.storage.rdb import open_storage


@pytest.mark.parametrize("name", list(PRUNERS))
def test_each_registered_pruner_builds_and_says_whether_it_prunes(name: str) -> None:
    pruner = make_pruner(name, 4)
    assert isinstance(pruner, optuna.pruners.BasePruner)
    assert pruner_spec(name).prunes == (not isinstance(pruner, optuna.pruners.NopPruner))
    assert not pruner_spec(NO_PRUNER).prunes


def test_an_unknown_pruner_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"pruner='nope' must be one of \('median', 'hyperband', 'asha', 'none'\)"):
        make_pruner("nope", 4)


@pytest.mark.parametrize(
    ("objectives", "kind"),
    [(("accuracy",), optuna.pruners.MedianPruner), (("accuracy", "params"), optuna.pruners.NopPruner)],
)
def test_a_multi_objective_study_gets_no_pruner(tmp_path: Path, objectives: tuple[str, ...], kind: type) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    settings = SearchSettings(study="t", storage=url, trials=1, epochs=3, pruner="median", objectives=objectives)
    study = open_study(settings, SearchSpace(), open_storage(url))
    assert type(study.pruner) is kind


@pytest.mark.parametrize("reports", [1, 3])
def test_warm_ups_and_budgets_are_the_same_epochs_counted_in_reports(reports: int) -> None:
    """Steps are reports from 1, so an epoch is ``reports`` steps: the median still judges from
    the end of epoch 2 and Hyperband still budgets 1 to 9 epochs; asha's first rung is one report."""
    median = make_pruner("median", 9, reports_per_epoch=reports)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert median._n_warmup_steps == 2 * reports and median._n_startup_trials == 5
    hyperband = make_pruner("hyperband", 9, reports_per_epoch=reports)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource) == (reports, 9 * reports)
    asha = make_pruner("asha", 9, reports_per_epoch=reports)
    assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
    assert (asha._min_resource, asha._reduction_factor, asha._min_early_stopping_rate) == (1, 3, 0)


def test_asha_stops_trials_part_way_into_their_first_epoch_through_search(tmp_path: Path, tiny_mnist: Path) -> None:
    """``search --pruner asha --reports-per-epoch 3``: its first rung is a third of an epoch,
    where a trial goes on only in the top third of those that reached it (their best while
    fewer than 6 have), so some trial stops there and says so in its line and the leaderboard."""
    studies = tmp_path / "studies"
    args = [
        "search", "--pruner", "asha", "--reports-per-epoch", "3", "--trials", "6", "--epochs", "2", "--seed", "0",
        "--val-size", "100", "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu",
        "--studies-dir", str(studies),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="mnist-mlp", storage=f"sqlite:///{studies / 'mnist-bench.db'}")
    early = [t for t in study.trials if (TrialRecord.of(t).epochs_trained or 1) < 1]
    assert early, [TrialRecord.of(t).reason for t in study.trials]
    leaderboard = (studies / "mnist-mlp" / "leaderboard.csv").read_text()
    for trial in early:
        record = TrialRecord.of(trial)
        assert record.state.name == "PRUNED" and list(trial.intermediate_values) == [1]  # at the first rung
        assert record.reason == f"pruned by asha pruner after {record.epochs_trained:.2f} epochs"
        assert record.reason in result.stdout and record.reason in leaderboard
    # How far each trained: a fraction in the leaderboard's file and in its table on screen.
    rows = pd.read_csv(studies / "mnist-mlp" / "leaderboard.csv").set_index("trial")
    for trial in early:
        assert rows.loc[trial.number, "epochs_trained"] == pytest.approx(TrialRecord.of(trial).epochs_trained)
    table = CliRunner().invoke(app, ["leaderboard", "--studies-dir", str(studies)], terminal_width=250).stdout
    assert f"{TrialRecord.of(early[0]).epochs_trained:.4g}" in table


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_reports_per_epoch_below_one_is_a_usage_error(tmp_path: Path, tiny_mnist: Path, bad: str) -> None:
    args = ["search", "--reports-per-epoch", bad, "--data-dir", str(tiny_mnist), "--studies-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("Error: Invalid value for '--reports-per-epoch'")
    assert not (tmp_path / "mnist-bench.db").exists()
