"""Trials judged several times an epoch (``--reports-per-epoch``): the steps a pruner is told
of, where a trial pruned inside an epoch stopped, and what its study keeps; a multi-objective
study's trials judged by the runner itself at the rungs (moasha)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.search.leaderboard import leaderboard
from mnist_bench.search.loop import open_study, pareto_numbers, run_trials
from mnist_bench.search.moasha import judge
from mnist_bench.search.pruners import ASHA_RUNGS
from mnist_bench.search.records import StudyRecord, TrialRecord, record_rung, rung_values
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
    with pytest.raises(MnistBenchError, match=r"another reports_per_epoch \(2: --reports-per-epoch 2\)") as refused:
        open_study(settings(tmp_path), SMALL, storage)
    assert "\n" not in str(refused.value)
    assert open_study(settings(tmp_path, reports_per_epoch=2), SMALL, storage).study_name == "t"


def test_reports_per_epoch_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(MnistBenchError, match="--reports-per-epoch 0: must be at least 1"):
        settings(tmp_path, reports_per_epoch=0)


# (accuracy, params), pruned by asha three times an epoch for one epoch: rungs at reports 1 (a
# third into it) and 3 (its end, where a trial that trained all its epochs completes).
MULTI = dict(objectives=("accuracy", "params"), pruner="asha", reports_per_epoch=3, epochs=1)
RANKED = re.compile(r"pruned by asha \(multi-objective\) after [\d.]+ epochs: rank (\d+) of (\d+) at report ([13])")


def test_a_multi_objective_search_prunes_a_trial_by_its_rank_at_a_rung(tmp_path: Path, tiny_data: DeviceData) -> None:
    """Each trial's (accuracy, params) at each rung it reached are stored on it and ranked
    against those of every trial there before it: one outside the top third (while fewer than
    6 have reached it, not the first) stops there, says its rank, and is on no Pareto front."""
    study = run_trials(settings(tmp_path, trials=6, **MULTI), SMALL, tiny_data).study
    records = [TrialRecord.of(t) for t in study.trials]
    pruned = [r for r in records if r.state == TrialState.PRUNED]
    complete = [r for r in records if r.state == TrialState.COMPLETE]
    assert pruned and complete and len(records) == 6
    for record in complete:  # at report 3, the end of epoch 1: that epoch's accuracy
        assert set(record.rung_values) == {1, 3} and record.rung_values[3] == (record.val_accs[0], record.n_params)
    for record in pruned:
        ranked = RANKED.fullmatch(record.reason)
        assert ranked is not None, record.reason
        rank, n, report = map(int, ranked.groups())
        assert report == max(record.rung_values) == 1 and record.values is None
        # The verdict again, from what is stored: trials ran one at a time, so those before it.
        at_rung = rung_values(study.trials, report)
        numbers = [number for number in sorted(at_rung) if number <= record.number]
        verdict = judge(
            [at_rung[k] for k in numbers], ("maximize", "minimize"), numbers.index(record.number), ASHA_RUNGS
        )
        assert (verdict.rank, verdict.n, verdict.goes_on) == (rank, n, False) and n == len(numbers)
    front = pareto_numbers(study)
    assert front and front <= {r.number for r in complete}
    frame = leaderboard(study, SMALL).set_index("trial")
    assert not frame.loc[[r.number for r in pruned], "pareto"].any()


def test_a_seeded_multi_objective_search_repeats_trial_for_trial_with_two_in_flight(
    tmp_path: Path, tiny_data: DeviceData
) -> None:
    """Deterministic objectives, two trials in flight, judged in lane order: the same trials
    start, stop at the same rungs with the same ranks, and end with the same values."""

    def run(name: str) -> list[tuple[object, ...]]:
        study = run_trials(settings(tmp_path, study=name, trials=4, parallel=2, **MULTI), SMALL, tiny_data).study
        records = [TrialRecord.of(t) for t in study.trials]
        return [
            (t.state, t.params, t.values, r.reason, r.rung_values) for t, r in zip(study.trials, records, strict=True)
        ]

    first = run("a")
    assert first == run("b")
    assert {state for state, *_ in first} == {TrialState.COMPLETE, TrialState.PRUNED}


def test_rung_values_another_worker_stored_count_and_half_written_ones_are_left_out(
    tmp_path: Path, tiny_data: DeviceData
) -> None:
    """Another process's trial at rung 1 with perfect accuracy and no parameters dominates
    every trial after it, so none ranks first, and each stops there (none has 6 beside it); one
    whose values never got written whole is not counted."""
    chosen = settings(tmp_path, trials=4, **MULTI)
    other = open_study(chosen, SMALL, open_storage(chosen.storage))  # another worker's handle on the file
    perfect = other.ask()
    record_rung(perfect, 1, (1.0, 0.0))
    other.tell(perfect, state=TrialState.PRUNED)
    half = other.ask()
    half.set_user_attr("rung_1", {"trial": half.number})
    other.tell(half, state=TrialState.FAIL)
    study = run_trials(chosen, SMALL, tiny_data).study
    ranked = [RANKED.search(TrialRecord.of(t).reason) for t in study.trials[2:]]
    assert [(m.group(2), m.group(3)) if m else None for m in ranked] == [("2", "1"), ("3", "1"), ("4", "1")]
    assert all(m and int(m.group(1)) >= 2 for m in ranked)
