"""A study's and a trial's records: written and read through a real storage, and read from older studies."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from mnist_bench import STREAMS_VERSION, __version__
from mnist_bench.search.leaderboard import leaderboard
from mnist_bench.search.records import (
    StudyRecord,
    TrialRecord,
    promotion_attrs,
    record_latency,
    record_new_study,
    record_promoted_from,
    record_reason,
    record_rung,
    record_start,
    record_trial,
    rung_values,
)
from mnist_bench.search.space import SearchSpace, sample_config
from mnist_bench.training.trainer import TrainResult

SPACE = SearchSpace()
PARAMS = {"n_layers": 1, "width_0": 32, "optimizer": "adam", "adam_lr": 1e-3, "batch_size": 64}
# What 0.2.0 stored on a complete trial, name for name (its ``_record`` and ``prepare_trial``).
ATTRS_0_2_0 = {
    "train_seed": 1234,
    "device": "cpu",
    "epochs_run": 3,
    "train_time_s": 1.25,
    "samples_per_s": 4000.0,
    "final_val_acc": 0.96,
    "best_val_acc": 0.97,
    "best_epoch": 2,
    "val_acc": [0.9, 0.97, 0.96],
    "train_loss": [0.5, None, 0.2],
    "n_params": 25450,
    "step": "eager",
    "latency_ms": 0.05,
}


# What 0.2.0's ``open_study`` stored on a study it created, name for name.
STUDY_ATTRS_0_2_0 = {
    "space": SPACE.to_dict(),
    "val_size": 100,
    "objective": "best validation accuracy over the epochs trained",
    "objectives": ["accuracy", "latency"],
    "mnist_bench_version": "0.2.0",
    "sampler": "nsga2",
    "pruner": "median",
    "epochs": 6,
    "seed": 11,
    "torch": "2.5.1",
}


def result(config_seed: int = 7) -> TrainResult:
    config = sample_config(optuna.trial.FixedTrial(PARAMS), SPACE, epochs=3, seed=config_seed)
    return TrainResult(
        config=config,
        val_accs=(0.9, 0.95, 0.94),
        train_loss=(0.6, float("nan"), 0.3),
        train_time_s=2.00004,
        samples_seen=9000,
        stopped_early=False,
        diverged=None,
        model=torch.nn.Linear(1, 1),
        eager_reason="a CPU trains eagerly",
        epochs_trained=3.0,
    )


def test_a_record_round_trips_through_a_sqlite_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="r", storage=url, direction="maximize")
    trial = study.ask()
    sample_config(trial, SPACE, epochs=3, seed=0)
    record_start(trial, seed=99, device="cpu")
    record_trial(trial, result())
    record_latency(trial, 0.125)
    study.tell(trial, 0.95)
    pruned = study.ask()
    record_start(pruned, seed=100, device="cpu")
    record_reason(pruned, "pruned by median pruner after epoch 2")
    study.tell(pruned, state=TrialState.PRUNED)

    stored = optuna.load_study(study_name="r", storage=url).trials  # read back afresh from the file
    record = TrialRecord.of(stored[0])
    assert record.number == 0 and record.state is TrialState.COMPLETE and record.values == (0.95,)
    assert record.accuracy == 0.95 and record.final_accuracy == 0.94 and record.best_epoch == 2
    assert record.val_accs == (0.9, 0.95, 0.94) and record.epochs_run == 3 and record.epochs_trained == 3.0
    assert record.train_loss == (0.6, None, 0.3)  # a NaN loss is stored as null (JSON has no NaN)
    assert record.train_time_s == 2.0 and record.samples_per_s == 4499.9  # both rounded as stored
    assert record.n_params == 32 * 784 + 32 + 32 * 10 + 10 and record.latency_ms == 0.125
    assert record.step == "eager" and record.eager_reason == "a CPU trains eagerly"
    assert record.train_seed == 99 and record.device == "cpu" and record.streams_version == STREAMS_VERSION
    assert record.reason == "" and record.promoted_from is None and record.retry_of is None
    # The names stored are those earlier versions wrote, and the streams version and epochs trained beside them.
    assert set(stored[0].user_attrs) == {*ATTRS_0_2_0, "eager_reason", "streams_version", "epochs_trained"}

    second = TrialRecord.of(stored[1])
    assert second.state is TrialState.PRUNED and second.values is None and second.accuracy is None
    assert second.reason.startswith("pruned by median") and second.epochs_run is None
    assert second.val_accs == () and second.train_loss == ()
    assert promotion_attrs(record) == {"promoted_from": 0, "train_seed": 99}


def test_a_study_record_round_trips_through_a_sqlite_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="r", storage=url, directions=["maximize", "minimize"])
    record_new_study(
        study,
        space=SPACE,
        val_size=100,
        objectives=("accuracy", "params"),
        sampler="random",
        pruner="none",
        epochs=4,
        seed=None,
        reports_per_epoch=3,
    )
    record_promoted_from(study, "short")

    loaded = optuna.load_study(study_name="r", storage=url)  # read back afresh from the file
    record = StudyRecord.of(loaded)
    assert record.space == SPACE and record.val_size == 100 and record.objectives == ("accuracy", "params")
    assert record.objective == "best validation accuracy over the epochs trained"
    assert record.mnist_bench_version == __version__ and record.streams_version == STREAMS_VERSION
    assert (record.sampler, record.pruner, record.epochs, record.seed) == ("random", "none", 4, None)
    assert record.reports_per_epoch == 3
    assert record.torch_version == torch.__version__ and record.promoted_from == "short"
    # The names stored are those 0.2.0 wrote, and the streams version, reports and promotion beside them.
    assert set(loaded.user_attrs) == {*STUDY_ATTRS_0_2_0, "streams_version", "reports_per_epoch", "promoted_from"}


def test_a_study_written_by_0_2_0_loads_through_the_record(tmp_path: Path) -> None:
    """Raw attributes as 0.2.0 wrote them; one trial from before most of them existed."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    study = optuna.create_study(study_name="old", storage=url, direction="maximize")
    for key, value in STUDY_ATTRS_0_2_0.items():
        study.set_user_attr(key, value)
    complete = study.ask()
    sample_config(complete, SPACE, epochs=3, seed=0)
    for key, value in ATTRS_0_2_0.items():
        complete.set_user_attr(key, value)
    study.tell(complete, 0.97)
    bare = study.ask()  # only a seed and an objective value: no figures, no step, no device
    sample_config(bare, SPACE, epochs=3, seed=0)
    bare.set_user_attr("train_seed", 5)
    study.tell(bare, 0.98)
    failed = study.ask()  # died before its parameters were all chosen
    study.tell(failed, state=TrialState.FAIL)

    loaded = optuna.load_study(study_name="old", storage=url)
    old, new, dead = (TrialRecord.of(t) for t in loaded.trials)
    assert old.accuracy == 0.97 and old.final_accuracy == 0.96 and old.val_accs == (0.9, 0.97, 0.96)
    assert old.train_loss == (0.5, None, 0.2) and old.latency_ms == 0.05 and old.train_seed == 1234
    assert old.streams_version is None and old.eager_reason is None
    assert old.epochs_trained == 3.0  # whole epochs then: its epochs_run
    assert new.accuracy == 0.98  # no best_val_acc stored: the objective value is the accuracy
    assert (
        new.epochs_run is None
        and new.epochs_trained is None
        and new.train_time_s is None
        and new.n_params is None
        and new.device is None
    )
    assert dead.accuracy is None and dead.values is None and dead.reason == ""
    assert StudyRecord.of(loaded) == StudyRecord(
        space=SPACE,
        val_size=100,
        objective="best validation accuracy over the epochs trained",
        objectives=("accuracy", "latency"),
        mnist_bench_version="0.2.0",
        streams_version="0.2.0",  # what 0.2.0's trials trained with
        sampler="nsga2",
        pruner="median",
        epochs=6,
        reports_per_epoch=1,  # the only choice then
        seed=11,
        torch_version="2.5.1",
        promoted_from=None,
    )

    frame = leaderboard(loaded, SPACE)
    assert frame["trial"].tolist() == [1, 0, 2]  # ranked by the record's accuracy
    assert frame["streams"].tolist() == ["0.2.0"] * 3
    assert frame.loc[0, "epochs_run"] == 0 and math.isnan(frame.loc[0, "train_time_s"])


def test_a_study_that_stored_nothing_reads_its_defaults(tmp_path: Path) -> None:
    """A study mnist-bench did not create (or the earliest 0.1.0's, before each attribute)."""
    url = f"sqlite:///{tmp_path / 'bare.db'}"
    optuna.create_study(study_name="bare", storage=url)
    assert StudyRecord.of(optuna.load_study(study_name="bare", storage=url)) == StudyRecord(
        space=None,
        val_size=None,
        objective=None,
        objectives=("accuracy",),  # the only objective before others could be chosen
        mnist_bench_version=None,
        streams_version="0.1.0",  # taken for the first version's
        sampler=None,
        pruner=None,
        epochs=None,
        reports_per_epoch=1,
        seed=None,
        torch_version=None,
        promoted_from=None,
    )


@pytest.mark.parametrize(
    "attrs, streams",
    [
        ({"mnist_bench_version": "0.1.0"}, "0.1.0"),
        ({"mnist_bench_version": "0.2.0"}, "0.2.0"),  # stored only its version, which names its streams
        ({"mnist_bench_version": "0.3.0", "streams_version": "0.2.0"}, "0.2.0"),
    ],
)
def test_a_study_s_streams_are_those_it_stored_else_its_version_s(
    tmp_path: Path, attrs: dict[str, str], streams: str
) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    assert StudyRecord.of(study).streams_version == streams


def test_rung_values_round_trip_and_what_does_not_read_whole_is_left_out(tmp_path: Path) -> None:
    """A multi-objective trial's values at each rung it reached, read by every worker while it
    trains: one written by another version half-way, or inherited by a retry (another trial's
    number), is no rung of this trial's; the rest of its record reads as ever."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="r", storage=url, directions=["maximize", "minimize"])
    first = study.ask()
    record_rung(first, 1, (0.5, 1000.0))
    record_rung(first, 3, (0.75, 1000.0))
    study.tell(first, state=TrialState.PRUNED)
    odd = study.ask()
    odd.set_user_attr("rung_1", {"trial": 0, "values": [0.9, 10.0]})  # a retry's copy of trial 0's
    odd.set_user_attr("rung_3", {"trial": 1})  # no values
    odd.set_user_attr("rung_9", {"trial": 1, "values": ["much", 1.0]})
    odd.set_user_attr("rung_x", {"trial": 1, "values": [0.1, 1.0]})
    odd.set_user_attr("rung_27", [0.1, 1.0])
    record_rung(odd, 81, (0.25, 20.0))

    trials = optuna.load_study(study_name="r", storage=url).trials  # read back afresh from the file
    assert trials[0].user_attrs["rung_3"] == {"trial": 0, "values": [0.75, 1000.0]}
    assert TrialRecord.of(trials[0]).rung_values == {1: (0.5, 1000.0), 3: (0.75, 1000.0)}
    assert TrialRecord.of(trials[1]).rung_values == {81: (0.25, 20.0)}
    assert TrialRecord.of(trials[1]).state is TrialState.RUNNING
    assert rung_values(trials, 1) == {0: (0.5, 1000.0)} and rung_values(trials, 81) == {1: (0.25, 20.0)}
    assert rung_values(trials, 9) == {}
