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
from mnist_bench.search.pruners import (
    ASHA_RUNGS,
    NO_PRUNER,
    PRUNERS,
    default_pruner,
    make_pruner,
    multi_objective_pruners,
    pruner_spec,
)
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
    ("objectives", "pruner", "kind"),
    [
        (("accuracy",), "median", optuna.pruners.MedianPruner),
        (("accuracy", "params"), "asha", optuna.pruners.NopPruner),
        (("accuracy", "params"), "", optuna.pruners.NopPruner),
    ],
)
def test_a_multi_objective_study_gets_no_optuna_pruner(
    tmp_path: Path, objectives: tuple[str, ...], pruner: str, kind: type
) -> None:
    """Optuna takes no reports with several objectives: the trial runner judges those (moasha),
    by asha unless the search names another pruner that can."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    settings = SearchSettings(study="t", storage=url, trials=1, epochs=3, pruner=pruner, objectives=objectives)
    study = open_study(settings, SearchSpace(), open_storage(url))
    assert type(study.pruner) is kind
    assert settings.pruner == study.user_attrs["pruner"] == (pruner or default_pruner(len(objectives)))


def test_which_pruners_judge_several_objectives_and_the_defaults() -> None:
    """asha judges them at its own rungs; none prunes nothing; median and hyperband cannot."""
    assert multi_objective_pruners() == ("asha", NO_PRUNER)
    assert pruner_spec("asha").multi_objective == ASHA_RUNGS
    asha = make_pruner("asha", 9)
    assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
    assert (asha._min_resource, asha._reduction_factor) == (ASHA_RUNGS.min_resource, ASHA_RUNGS.reduction_factor)
    assert (default_pruner(1), default_pruner(2), default_pruner(3)) == ("median", "asha", "asha")
    assert SearchSettings(study="t", storage="sqlite://", trials=1, epochs=1).pruner == "median"


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


def search_args(tmp_path: Path, tiny_mnist: Path, *extra: str, trials: int = 5) -> list[str]:
    return [
        "search", "--trials", str(trials), "--epochs", "1", "--seed", "0", "--val-size", "100",
        "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu", "--studies-dir", str(tmp_path / "studies"),
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_pruner_of_one_objective_with_several_is_one_line_naming_those_that_can(
    tmp_path: Path, tiny_mnist: Path, pruner: str
) -> None:
    args = search_args(tmp_path, tiny_mnist, "--objective", "accuracy,latency", "--pruner", pruner)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr == (
        f"Error: --pruner {pruner}: judges one objective, not accuracy,latency; with several use asha or none\n"
    )
    assert not (tmp_path / "studies").exists()  # refused before a study was made


def test_a_multi_objective_search_is_pruned_by_asha_unless_it_names_none(tmp_path: Path, tiny_mnist: Path) -> None:
    """Named no pruner, ``search --objective accuracy,params`` says it prunes with asha on both
    objectives, and a trial it stops says its rank at the rung, on its line and in the
    leaderboard; with --pruner none every trial trains all its epochs."""
    studies = tmp_path / "studies"
    args = search_args(tmp_path, tiny_mnist, "--objective", "accuracy,params", "--reports-per-epoch", "3")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # lines wrapped at the console's width, joined again
    assert "1 epoch(s) max, pruned by asha (multi-objective, on accuracy, params at once)." in out
    study = optuna.load_study(study_name="mnist-mlp", storage=f"sqlite:///{studies / 'mnist-bench.db'}")
    assert study.user_attrs["pruner"] == "asha"
    pruned = [TrialRecord.of(t) for t in study.get_trials(states=(optuna.trial.TrialState.PRUNED,))]
    assert pruned
    leaderboard = (studies / "mnist-mlp" / "leaderboard.csv").read_text()
    for record in pruned:
        assert record.reason.startswith(f"pruned by asha (multi-objective) after {record.epochs_trained:.2f} epochs")
        assert record.reason in leaderboard and record.reason in out
    args = search_args(
        tmp_path, tiny_mnist, "--objective", "accuracy,params", "--pruner", "none", "--study", "n", trials=2
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "1 epoch(s) max, no pruning." in " ".join(result.stdout.split())
    study = optuna.load_study(study_name="n", storage=f"sqlite:///{studies / 'mnist-bench.db'}")
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
