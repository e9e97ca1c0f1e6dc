"""The second stage of a multi-fidelity search: the best few trials trained longer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from mnist_bench.artifacts.final import EpochDone, TimeLeft
from mnist_bench.cli import app
from mnist_bench.data import DeviceData
from mnist_bench.output.console import duration_text
from mnist_bench.search.loop import trial_config
from mnist_bench.search.promote import PromotedRow, Promotion
from mnist_bench.search.records import PROMOTED_FROM
from mnist_bench.search.study import TrialEpoch
from mnist_bench.storage.rdb import default_storage
from mnist_bench.training.trainer import train
from tests.test_cli import search_args

runner = CliRunner()


def promote_args(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [
        "promote", "--best", "2", "--epochs", "3", "--data-dir", str(data), "--no-verify",
        "--studies-dir", str(tmp_path / "studies"), "--device", "cpu", *extra,
    ]  # fmt: skip


def load(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=default_storage(tmp_path / "studies"))


def test_promote_trains_the_best_trials_longer_in_their_own_study(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "4", "--pruner", "none")).exit_code == 0
    result = runner.invoke(app, promote_args(tmp_path, tiny_mnist))
    assert result.exit_code == 0, result.output
    short, long = load(tmp_path, "mnist-mlp"), load(tmp_path, "mnist-mlp-3ep")
    ranked = sorted(short.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (-t.values[0], t.number))
    promoted = long.get_trials(states=(TrialState.COMPLETE,))
    # The two best short trials, best first, with their own parameters and training seeds, for 3 epochs.
    assert [t.user_attrs[PROMOTED_FROM] for t in promoted] == [t.number for t in ranked[:2]]
    for short_trial, long_trial in zip(ranked, promoted, strict=False):
        assert long_trial.params == short_trial.params
        assert long_trial.user_attrs["train_seed"] == short_trial.user_attrs["train_seed"]
        assert long_trial.user_attrs["epochs_run"] == 3
    assert long.user_attrs[PROMOTED_FROM] == "mnist-mlp"
    assert "Spearman" not in result.output  # two rows cannot be correlated
    assert "Too few finished trials" in result.output
    assert "mnist-bench best --study mnist-mlp-3ep --retrain" in result.output
    assert (tmp_path / "studies" / "mnist-mlp-3ep" / "leaderboard.csv").is_file()


def test_a_promoted_trial_trains_what_the_short_trial_would_have_with_more_epochs(
    tmp_path: Path, tiny_mnist: Path, tiny_data: DeviceData
) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--pruner", "none")).exit_code == 0
    assert runner.invoke(app, promote_args(tmp_path, tiny_mnist, "--best", "1")).exit_code == 0
    short, long = load(tmp_path, "mnist-mlp"), load(tmp_path, "mnist-mlp-3ep")
    (promoted,) = long.get_trials(states=(TrialState.COMPLETE,))
    config = trial_config(short, short.trials[promoted.user_attrs[PROMOTED_FROM]], epochs=3)
    assert trial_config(long, promoted) == config
    # The whole validation curve of a fresh training of that config, on the same split.
    alone = train(config, tiny_data)
    assert promoted.user_attrs["val_acc"] == pytest.approx(list(alone.val_accs), abs=1e-6)


def epoch_lines(output: str) -> list[tuple[int, int, str]]:
    found = re.findall(r"trial +(\d+) epoch (\d+)/3: val acc (\d\.\d{4}), \d+ s so far, \d+ s left", output)
    return sorted((int(number), int(epoch), val_acc) for number, epoch, val_acc in found)


def test_promoted_trials_side_by_side_train_what_they_train_one_at_a_time(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "4", "--pruner", "none")).exit_code == 0
    shown = {}
    for name, parallel in (("one", "1"), ("two", "2")):
        result = runner.invoke(app, promote_args(tmp_path, tiny_mnist, "--into", name, "--parallel", parallel))
        assert result.exit_code == 0, result.output
        shown[name] = epoch_lines(result.output)
    curves = {
        name: {t.user_attrs[PROMOTED_FROM]: t.user_attrs["val_acc"] for t in load(tmp_path, name).trials}
        for name in ("one", "two")
    }
    assert curves["one"] == curves["two"] and len(curves["one"]) == 2
    # Both ways, a long promotion is watched: a line for every epoch but the last (the
    # trial's own line follows), with the accuracy the study stores and the time left.
    for name in ("one", "two"):
        expected = [
            (t.number, epoch, f"{val_acc:.4f}")
            for t in load(tmp_path, name).trials
            for epoch, val_acc in enumerate(t.user_attrs["val_acc"][:-1], start=1)
        ]
        assert shown[name] == sorted(expected) and len(expected) == 4


def test_a_trials_time_left_is_its_rate_so_far() -> None:
    assert TrialEpoch(0, 60, 240, 0.99, 300.0).left_s == pytest.approx(180 * 5.0)
    assert TrialEpoch(0, 240, 240, 0.99, 1200.0).left_s == 0


def test_promote_again_keeps_finished_trials_and_adds_only_missing_ones(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "4", "--pruner", "none")).exit_code == 0
    quiet = runner.invoke(app, promote_args(tmp_path, tiny_mnist, "--best", "1", "--quiet"))
    assert quiet.exit_code == 0 and epoch_lines(quiet.output) == []  # --quiet: no trial nor epoch lines
    first = load(tmp_path, "mnist-mlp-3ep").get_trials(states=(TrialState.COMPLETE,))
    result = runner.invoke(app, promote_args(tmp_path, tiny_mnist, "--best", "3"))
    assert result.exit_code == 0, result.output
    trials = load(tmp_path, "mnist-mlp-3ep").get_trials()
    assert len(trials) == 3 and all(t.state is TrialState.COMPLETE for t in trials)
    assert trials[0].datetime_complete == first[0].datetime_complete  # not trained again
    assert len({t.user_attrs[PROMOTED_FROM] for t in trials}) == 3
    assert "Spearman rank correlation, short against long:" in result.output


def test_an_interrupted_promotion_resumes_where_it_stopped(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "4", "--pruner", "none")).exit_code == 0
    storage = default_storage(tmp_path / "studies")
    long = optuna.create_study(study_name="mnist-mlp-3ep", storage=storage, direction="maximize")
    # What a Ctrl-C leaves: the trial that was training is failed, its promotion not done.
    short = load(tmp_path, "mnist-mlp")
    best = max(short.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.values[0])
    failed = long.ask()
    failed.set_user_attr(PROMOTED_FROM, best.number)
    long.tell(failed, state=TrialState.FAIL)
    result = runner.invoke(app, promote_args(tmp_path, tiny_mnist, "--best", "1"))
    assert result.exit_code == 0, result.output
    states = [t.state for t in load(tmp_path, "mnist-mlp-3ep").get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--best", "0"], "--best 0: must be at least 1"),
        (["--epochs", "0"], "--epochs 0: must be at least 1"),
        (["--into", "mnist-mlp"], "need a study of their own"),
        (["--study", "nope"], "nope"),
        (["--parallel", "0"], "must be between 1 and"),
    ],
)
def test_bad_promote_input_is_one_line_and_nonzero(
    tmp_path: Path, tiny_mnist: Path, args: list[str], message: str
) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist)).exit_code == 0
    result = runner.invoke(app, promote_args(tmp_path, tiny_mnist, *args))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(load(tmp_path, "mnist-mlp").trials) == 3  # the short study is untouched


def test_promote_refuses_a_study_promoted_from_another(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist)).exit_code == 0
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--study", "other")).exit_code == 0
    assert runner.invoke(app, promote_args(tmp_path, tiny_mnist, "--best", "1", "--into", "long")).exit_code == 0
    result = runner.invoke(app, promote_args(tmp_path, tiny_mnist, "--study", "other", "--into", "long"))
    assert result.exit_code == 1
    assert "promoted from study 'mnist-mlp'" in result.output


def row(short: float, long: float | None, rank: int) -> PromotedRow:
    return PromotedRow(rank, short, rank, rank if long is not None else None, long, None)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([(0.9, 0.95), (0.8, 0.94), (0.7, 0.93)], 1.0),
        ([(0.9, 0.93), (0.8, 0.94), (0.7, 0.95)], -1.0),
        ([(0.9, 0.95), (0.8, 0.93), (0.7, 0.94), (0.6, 0.92)], 0.8),
        ([(0.9, 0.95), (0.8, None), (0.7, 0.94)], None),  # two finished rows
    ],
)
def test_spearman_of_short_against_long(pairs: list[tuple[float, float | None]], expected: float | None) -> None:
    rows = tuple(row(s, lng, i) for i, (s, lng) in enumerate(pairs, start=1))
    spearman = Promotion(study=None, rows=rows).spearman  # type: ignore[arg-type]
    assert spearman == (None if expected is None else pytest.approx(expected))


def test_time_left_counts_only_epochs_trained_here() -> None:
    now = [0.0]
    clock = TimeLeft([0, 1], 10, clock=lambda: now[0])
    # Seed 0 resumed after 6 of 10 epochs: nothing trained yet, no estimate.
    assert clock.update(EpochDone(0, 6, 10, 0.5, 60.0, resumed=True)) is None
    now[0] = 5.0
    # One epoch in 5 s; 3 left of seed 0 and 10 of seed 1.
    assert clock.update(EpochDone(0, 7, 10, 0.5, 65.0)) == pytest.approx(13 * 5.0)
    for epoch in (8, 9, 10):
        now[0] += 5.0
        left = clock.update(EpochDone(0, epoch, 10, 0.5, 60.0 + 5 * (epoch - 6)))
    assert left == pytest.approx(10 * 5.0)  # seed 0 done; seed 1's 10 epochs at 5 s


@pytest.mark.parametrize(
    ("seconds", "text"), [(4.2, "4 s"), (99, "99 s"), (100, "2 min"), (59 * 60, "59 min"), (3900, "1 h 05 min")]
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.slow
def test_real_mnist_frontier_pipeline_at_small_scale(tmp_path: Path, real_mnist_subset: Path) -> None:
    # The frontier pipeline with its own space file, scaled down from 48 trials of 12 epochs,
    # 4 promoted to 50 and a 240-epoch retrain, on 12,000 real digits: search, promote,
    # best --retrain, on the CPU.
    studies = tmp_path / "studies"
    common = ["--studies-dir", str(studies), "--data-dir", str(real_mnist_subset), "--no-verify", "--device", "cpu"]
    search = ["search", "--space", "frontier-cpu", "--study", "f", "--trials", "2", "--epochs", "1", "--seed", "0",
              "--val-size", "2000"]  # fmt: skip
    assert runner.invoke(app, [*search, "--pruner", "none", *common]).exit_code == 0
    promoted = runner.invoke(app, ["promote", "--study", "f", "--best", "2", "--epochs", "2", *common])
    assert promoted.exit_code == 0, promoted.output
    long = load(tmp_path, "f-2ep")
    assert all(t.value > t_short.value for t, t_short in zip(long.trials, ranked_short(tmp_path), strict=True))
    retrained = runner.invoke(app, ["best", "--study", "f-2ep", "--retrain", "--epochs", "2", *common])
    assert retrained.exit_code == 0, retrained.output
    meta = json.loads(next((studies / "f-2ep").glob("trial-*/checkpoint.json")).read_text())
    assert meta["test"]["accuracy"] > 0.9  # on 2,000 real test digits, after 2 epochs of 12,000
    assert "left" in retrained.output  # the per-epoch lines say how long the run has left


def ranked_short(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    short = load(tmp_path, "f").get_trials(states=(TrialState.COMPLETE,))
    return sorted(short, key=lambda t: (-t.values[0], t.number))
