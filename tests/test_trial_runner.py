"""Trials judged several times an epoch (``--reports-per-epoch``): the steps a pruner is told
of, where a trial pruned inside an epoch stopped, and what its study keeps."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.search.loop import open_study, run_trials
from mnist_bench.search.records import StudyRecord, TrialRecord
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SearchSettings
from mnist_bench.storage.rdb import open_storage

SMALL = SearchSpace(depth=(1, 2), width=(8, 64), batch_sizes=(32, 64))


def settings(tmp_path: Path, **overrides: object) -> SearchSettings:
    values: dict[str, object] = dict(
        study="t", storage=f"sqlite:///{tmp_path / 's.db'}", trials=3, epochs=2, seed=0, val_size=100, pruner="none"
    )
    values.update(overrides)
    return SearchSettings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("parallel", [1, 2])
def test_three_reports_an_epoch_are_steps_1_to_3e_and_train_what_one_does(
    tmp_path: Path, tiny_data: DeviceData, parallel: int
) -> None:
    """Report k comes after k/3 epochs; every third is an epoch's end, with the accuracy one
    report an epoch gives there: the same seeded trials, the same training."""
    once = run_trials(settings(tmp_path, study="once", parallel=parallel), SMALL, tiny_data).study
    thrice = run_trials(settings(tmp_path, study="thrice", reports_per_epoch=3, parallel=parallel), SMALL, tiny_data)
    assert StudyRecord.of(thrice.study).reports_per_epoch == 3 and StudyRecord.of(once).reports_per_epoch == 1
    for one, three in zip(once.trials, thrice.study.trials, strict=True):
        assert three.state == TrialState.COMPLETE and three.params == one.params and three.values == one.values
        steps = three.intermediate_values
        assert sorted(steps) == [1, 2, 3, 4, 5, 6] and sorted(one.intermediate_values) == [1, 2]
        assert [steps[3], steps[6]] == [one.intermediate_values[1], one.intermediate_values[2]]
        record = TrialRecord.of(three)
        assert record.val_accs == (steps[3], steps[6]) == TrialRecord.of(one).val_accs  # the per-epoch record
        assert record.epochs_run == 2 and record.epochs_trained == 2.0 and record.best_epoch in (1, 2)


def test_a_trial_can_be_pruned_part_way_into_its_first_epoch(tmp_path: Path, tiny_data: DeviceData) -> None:
    """A pruner that stops every trial at its first report (no accuracy reaches 1.01) stops it
    a third into epoch 1: its record says how far it got, and holds no epoch it did not finish."""
    chosen = settings(tmp_path, reports_per_epoch=3, epochs=3)
    study = optuna.create_study(
        study_name="t", storage=chosen.storage, direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01)
    )
    run_trials(chosen, SMALL, tiny_data, study=study)
    assert len(study.trials) == 3
    for trial in study.trials:
        record = TrialRecord.of(trial)
        assert record.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
        batch = int(trial.params["batch_size"])
        steps = -(-500 // batch)  # an epoch of 500 training images
        part = -(-steps // 3) * batch / 500  # the first of 3 chunks: a third of the steps, rounded up
        assert record.epochs_run == 0 and record.epochs_trained == pytest.approx(part, abs=1e-4) and 1 / 3 <= part < 0.4
        assert record.val_accs == () and record.accuracy is None and record.best_epoch is None
        assert record.reason == f"pruned by none pruner after {part:.2f} epochs"


def test_a_study_keeps_its_reports_per_epoch(tmp_path: Path, tiny_data: DeviceData) -> None:
    """Its trials' steps count reports of that many an epoch: resuming with another would mix
    steps of other lengths in one pruner's comparisons."""
    run_trials(settings(tmp_path, trials=1, reports_per_epoch=2), SMALL, tiny_data)
    storage = open_storage(settings(tmp_path).storage)
    with pytest.raises(MnistBenchError, match="another reports_per_epoch") as refused:
        open_study(settings(tmp_path), SMALL, storage)
    assert "\n" not in str(refused.value)
    assert open_study(settings(tmp_path, reports_per_epoch=2), SMALL, storage).study_name == "t"


def test_reports_per_epoch_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(MnistBenchError, match="--reports-per-epoch 0: must be at least 1"):
        settings(tmp_path, reports_per_epoch=0)
