from __future__ import annotations

import gc
import sqlite3
import threading
import time
import weakref
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from sqlalchemy import event

from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.search.loop import open_study, pick_trial, run_trials
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SearchSettings, TrialEpoch, training_seed
from mnist_bench.storage.rdb import load_study, open_storage
from mnist_bench.training.trainer import Training

# Small widths keep each tiny-data trial to a fraction of a second.
SMALL = SearchSpace(depth=(1, 2), width=(8, 64), batch_sizes=(32, 64))


def settings(tmp_path: Path, **overrides: object) -> SearchSettings:
    values: dict[str, object] = dict(
        study="t", storage=f"sqlite:///{tmp_path / 's.db'}", trials=4, epochs=2, seed=0, val_size=100
    )
    values.update(overrides)
    return SearchSettings(**values)  # type: ignore[arg-type]


def test_search_stores_trials_that_plain_optuna_can_read(tmp_path: Path, tiny_data: DeviceData) -> None:
    outcome = run_trials(settings(tmp_path), SMALL, tiny_data)
    assert outcome.ran == 4 and outcome.finished == 4
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert len(study.trials) == 4
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert {"n_layers", "width_0", "optimizer", "batch_size"} <= set(trial.params)
        attrs = trial.user_attrs
        assert attrs["epochs_run"] == 2 and len(attrs["val_acc"]) == 2
        assert attrs["best_val_acc"] == max(attrs["val_acc"]) == trial.value
        assert attrs["train_time_s"] > 0 and attrs["samples_per_s"] > 0
        assert attrs["train_seed"] == training_seed(0, trial.number)
        assert set(trial.intermediate_values) == {1, 2}
    assert study.user_attrs["space"] == SMALL.to_dict() and study.user_attrs["val_size"] == 100


def test_trials_counts_the_total_and_a_rerun_tops_up(tmp_path: Path, tiny_data: DeviceData) -> None:
    run_trials(settings(tmp_path, trials=2), SMALL, tiny_data)
    again = run_trials(settings(tmp_path, trials=2), SMALL, tiny_data)
    assert again.ran == 0 and again.finished == 2
    more = run_trials(settings(tmp_path, trials=5), SMALL, tiny_data)
    assert more.ran == 3 and more.finished == 5 and len(more.study.trials) == 5


def test_a_search_whose_timeout_has_run_out_starts_no_trial(tmp_path: Path, tiny_data: DeviceData) -> None:
    """--timeout counts from the search's start (one deadline for the loop and its passes): a
    nanosecond is over before the first trial would start, so none does, and the study says so."""
    outcome = run_trials(settings(tmp_path, timeout=1e-9), SMALL, tiny_data)
    assert outcome.ran == 0 and not outcome.study.trials
    with pytest.raises(MnistBenchError, match=r"has no complete trial yet \(0 complete, 0 pruned, 0 failed\)"):
        pick_trial(outcome.study)


def test_same_seed_repeats_the_study(tmp_path: Path, tiny_data: DeviceData) -> None:
    a = run_trials(settings(tmp_path, study="a"), SMALL, tiny_data).study
    b = run_trials(settings(tmp_path, study="b"), SMALL, tiny_data).study
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.value for t in a.trials] == [t.value for t in b.trials]


def test_diverging_trial_is_pruned_with_its_reason_and_search_goes_on(tmp_path: Path, tiny_data: DeviceData) -> None:
    explosive = SearchSpace(depth=(1, 1), width=(8, 16), optimizers=("sgd",), sgd_lr=(1e5, 1e6), batch_sizes=(32,))
    outcome = run_trials(settings(tmp_path, trials=2, epochs=3), explosive, tiny_data)
    assert outcome.ran == 2
    for trial in outcome.study.trials:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert trial.user_attrs["reason"].startswith("diverged: training loss became")


def test_pruner_stops_hopeless_trials(tmp_path: Path, tiny_data: DeviceData) -> None:
    # Half the trials get a learning rate too small to learn anything in 6 epochs.
    space = SearchSpace(depth=(1, 1), width=(16, 16), optimizers=("sgd",), sgd_lr=(1e-7, 0.3), batch_sizes=(32,))
    outcome = run_trials(settings(tmp_path, trials=16, epochs=6, sampler="random"), space, tiny_data)
    pruned = outcome.study.get_trials(states=[optuna.trial.TrialState.PRUNED])
    assert pruned, "median pruner pruned nothing"
    for trial in pruned:
        # No trial is judged on its first epoch alone.
        assert 2 <= trial.user_attrs["epochs_run"] < 6 and "pruned by median" in trial.user_attrs["reason"]


def test_resuming_with_another_space_is_refused(tmp_path: Path, tiny_data: DeviceData) -> None:
    run_trials(settings(tmp_path, trials=1), SMALL, tiny_data)
    other = SearchSpace(depth=(3, 4))
    storage = open_storage(settings(tmp_path).storage)
    with pytest.raises(MnistBenchError, match="another space"):
        open_study(settings(tmp_path), other, storage)
    with pytest.raises(MnistBenchError, match=r"another val_size \(100, this run 50\)"):
        open_study(settings(tmp_path, val_size=50), SMALL, storage)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(trials=0), "--trials 0"),
        (dict(trials=-3), "--trials -3"),
        (dict(epochs=0), "--epochs 0"),
        (dict(pruner="sometimes"), "--pruner"),
        (dict(sampler="grid"), "--sampler"),
        (dict(timeout=0.0), "--timeout"),
        (dict(study="../escape"), "--study"),
    ],
)
def test_bad_settings_are_rejected(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(MnistBenchError, match=message):
        settings(tmp_path, **overrides)


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url", "is not a URL"),
        ("nosuchdb://x/y", "cannot open storage nosuchdb://x/y"),
        ("postgresql://user:secret@127.0.0.1:1/db", r"cannot open storage postgresql://user:\*\*\*@127.0.0.1:1/db"),
    ],
)
def test_bad_storage_urls_give_one_line(url: str, message: str) -> None:
    with pytest.raises(MnistBenchError, match=message) as info:
        open_storage(url)
    assert "\n" not in str(info.value) and "secret" not in str(info.value)


def test_load_study_lists_what_exists(tmp_path: Path, tiny_data: DeviceData) -> None:
    run_trials(settings(tmp_path, trials=1, study="exists"), SMALL, tiny_data)
    with pytest.raises(MnistBenchError, match=r"'nope' does not exist .*studies there: exists"):
        load_study("nope", open_storage(settings(tmp_path).storage))


def test_training_seed_is_derived_and_spread() -> None:
    assert training_seed(0, 5) == training_seed(0, 5)
    assert len({training_seed(0, n) for n in range(100)}) == 100
    assert training_seed(1, 5) != training_seed(0, 5)
    assert 0 <= training_seed(None, 0) < 2**31


def test_multi_objective_search_has_a_pareto_front(tmp_path: Path, tiny_data: DeviceData) -> None:
    from mnist_bench.search.leaderboard import leaderboard
    from mnist_bench.search.loop import pick_trial
    from mnist_bench.search.study import best_accuracy

    outcome = run_trials(settings(tmp_path, trials=5, objectives=("accuracy", "params")), SMALL, tiny_data)
    study = outcome.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.user_attrs["pruner"] == "asha"  # named none: the one that judges several objectives
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    for trial in complete:
        assert trial.values[1] == trial.user_attrs["n_params"] and trial.user_attrs["latency_ms"] > 0
    frame = leaderboard(study, SMALL)
    assert frame["pareto"].sum() == len(study.best_trials) >= 1
    assert set(frame[frame["pareto"]]["trial"]) <= {t.number for t in complete}
    assert pick_trial(study).trial.values[0] == best_accuracy(study) == outcome.best_value
    with pytest.raises(MnistBenchError, match="another objective"):
        open_study(settings(tmp_path), SMALL, open_storage(settings(tmp_path).storage))


@pytest.mark.parametrize("objectives", [("latency",), ("accuracy", "speed"), ("accuracy", "params", "params")])
def test_bad_objectives_rejected(tmp_path: Path, objectives: tuple[str, ...]) -> None:
    with pytest.raises(MnistBenchError, match="--objective"):
        settings(tmp_path, objectives=objectives)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_trial_finished_by_another_worker_is_one_notice(tmp_path: Path, tiny_data: DeviceData, parallel: int) -> None:
    """Another worker took this process's trials for a crashed worker's and failed them
    (as its stale-trial sweep does): this process says so in one line and goes on."""
    chosen = settings(tmp_path, trials=parallel, epochs=5000, pruner="none", parallel=parallel)
    storage = open_storage(chosen.storage)
    study = open_study(chosen, SMALL, storage)
    notices: list[str] = []
    errors: list[BaseException] = []

    def search() -> None:
        try:
            run_trials(chosen, SMALL, tiny_data, study=study, on_notice=notices.append)
        except BaseException as exc:  # noqa: BLE001  (the assertion below shows it)
            errors.append(exc)

    thread = threading.Thread(target=search)
    thread.start()
    deadline = time.monotonic() + 60
    while len(running := study.get_trials(states=(TrialState.RUNNING,))) < parallel:
        assert time.monotonic() < deadline and thread.is_alive(), errors
        time.sleep(0.05)
    for trial in running:  # mid-training: each trains 5000 epochs
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    thread.join(timeout=60)
    assert not thread.is_alive() and not errors
    assert len(notices) == parallel
    assert all("another worker finished that trial first" in line and "\n" not in line for line in notices)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * parallel  # as the other worker left them


class Outage:
    """A real SQLite storage that stops answering for ``seconds`` just before trial
    ``number``'s ``epoch`` report (another connection holds the write lock); its writes
    give up after 2 s, so that report fails, and with 3 s whatever writes from 1 s later
    succeeds."""

    def __init__(self, chosen: SearchSettings, number: int, epoch: int, *, seconds: float = 3.0) -> None:
        storage = open_storage(chosen.storage)

        @event.listens_for(storage.engine, "connect")
        def _impatient(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            dbapi_connection.execute("PRAGMA busy_timeout = 2000")

        storage.engine.dispose()
        self.study = open_study(chosen, SMALL, storage)
        self.at = (number, epoch)
        self.locker = sqlite3.connect(
            chosen.storage.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        self.unlock = threading.Timer(seconds, self.locker.execute, ("COMMIT",))

    def on_epoch(self, epoch: TrialEpoch) -> None:  # called just before the epoch's report
        if (epoch.number, epoch.epoch) == self.at:
            self.locker.execute("BEGIN EXCLUSIVE")
            self.unlock.start()


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_trial_that_loses_the_storage_is_not_counted(tmp_path: Path, tiny_data: DeviceData, parallel: int) -> None:
    """The storage stops answering while trial 1 trains and answers again before the
    trial is told: it is stored as failed. The trial did not fail, the storage did: the
    search says so and runs another in its place, where it used to count it and end one
    trial short. The same whatever the trials in flight (--storage-retry, for every K)."""
    chosen = settings(tmp_path, trials=3, epochs=4, pruner="none", parallel=parallel)
    outage = Outage(chosen, 1, 2)
    notices: list[str] = []
    outcome = run_trials(
        chosen, SMALL, tiny_data, study=outage.study, on_notice=notices.append, on_epoch=outage.on_epoch
    )
    outage.unlock.join()
    assert outcome.finished == 3 and outcome.ran == 3
    assert [t.state for t in outage.study.get_trials()] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE
    ]  # fmt: skip
    reason = outage.study.trials[1].user_attrs["reason"]
    assert reason.startswith("lost the storage: OperationalError: ") and "database is locked" in reason, reason
    assert notices == ["trial 1 lost the storage while it trained and failed; another takes its place"]


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_storage_back_within_the_retry_window_is_waited_for(
    tmp_path: Path, tiny_data: DeviceData, parallel: int
) -> None:
    """The storage does not answer even to fail the trial that met the outage: the search
    gives up the trials in flight, waits for the storage (--storage-retry, for every K),
    fails them once it is back and runs others in their places."""
    chosen = settings(tmp_path, trials=3, epochs=4, pruner="none", parallel=parallel)
    outage = Outage(chosen, 1, 2, seconds=6.0)
    notices: list[str] = []
    outcome = run_trials(
        chosen, SMALL, tiny_data, study=outage.study, on_notice=notices.append, on_epoch=outage.on_epoch
    )
    outage.unlock.join()
    assert outcome.finished == 3 and outcome.ran == 3
    failed = outage.study.get_trials(states=(TrialState.FAIL,))
    given_up = [1] if parallel == 1 else [0, 1, 2]  # with 3 in flight, trials 0 and 2 were given up too
    assert sorted(t.number for t in failed) == given_up
    assert all(t.user_attrs["reason"].startswith("lost the storage: OperationalError: ") for t in failed)
    assert sorted(notices) == [f"trial {n} lost the storage while it trained and failed; another takes its place"
                               for n in given_up]  # fmt: skip
    assert not outage.study.get_trials(states=(TrialState.RUNNING,))


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_search_that_loses_the_storage_for_longer_stops_in_one_line(
    tmp_path: Path, tiny_data: DeviceData, parallel: int
) -> None:
    """A storage gone for longer than --storage-retry: the search stops with one line (no
    traceback), whatever the trials in flight, and the trials stored before stay stored."""
    chosen = settings(tmp_path, trials=4, epochs=4, pruner="none", parallel=parallel, storage_retry_s=1.0)
    outage = Outage(chosen, 3, 2, seconds=10.0)  # trial 3 trains alone: 0, 1 and 2 are complete
    with pytest.raises(MnistBenchError) as raised:
        run_trials(chosen, SMALL, tiny_data, study=outage.study, on_epoch=outage.on_epoch)
    outage.unlock.join()
    message = str(raised.value)
    assert message.startswith(f"lost the storage at {tmp_path / 's.db'} for over 1 s (") and "\n" not in message
    assert "database is locked" in message and "stored trials are kept" in message, message
    states = [t.state for t in outage.study.get_trials()]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.RUNNING], states


def test_a_failed_trial_leaves_nothing_alive(
    tmp_path: Path, tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training that raises (out of memory) fails its trial, and its model (on CUDA, its
    graph and memory pool) is freed at once, not kept by the exception's traceback until a
    full garbage collection."""
    models: list[weakref.ref[torch.nn.Module]] = []

    def out_of_memory(self: Training) -> float | None:
        models.append(weakref.ref(self.model))
        raise RuntimeError("CUDA out of memory (stand-in)")

    monkeypatch.setattr(Training, "run_chunk", out_of_memory)
    gc.disable()
    try:
        run_trials(settings(tmp_path, trials=1), SMALL, tiny_data)
        assert len(models) == 1 and models[0]() is None
    finally:
        gc.enable()
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["reason"] == "RuntimeError: CUDA out of memory (stand-in)"


@pytest.mark.parametrize("made_by, resumes", [("0.2.0", True), ("0.1.0", False)])
def test_a_study_made_before_studies_stored_their_streams_is_judged_by_its_version(
    tmp_path: Path, made_by: str, resumes: bool
) -> None:
    """0.2.0 stored only its version; its streams are this version's, 0.1.0's were not."""
    chosen = settings(tmp_path)
    storage = open_storage(chosen.storage)
    old = optuna.create_study(study_name="t", storage=storage, direction="maximize")
    attrs = {"space": SMALL.to_dict(), "val_size": 100, "objectives": ["accuracy"], "mnist_bench_version": made_by}
    for key, value in attrs.items():
        old.set_user_attr(key, value)
    if resumes:
        assert "streams_version" not in open_study(chosen, SMALL, storage).user_attrs  # kept as it was
    else:
        with pytest.raises(MnistBenchError, match=rf"mnist-bench {made_by}, this version's are .*--mixed-versions"):
            open_study(chosen, SMALL, storage)
    open_study(settings(tmp_path, mixed_versions=True), SMALL, storage)


def test_stop_when_flat_stops_before_the_cap_and_without_it_the_search_runs_to_trials(
    tmp_path: Path, tiny_data: DeviceData
) -> None:
    """On 100 validation images the tiny data's best is reached in a few trials and cannot
    move beyond the noise after: the search stops once the rule holds, far short of its cap.
    The same seeded search without the option trains the same trials and goes past that point."""
    flat = run_trials(settings(tmp_path, study="flat", trials=40, epochs=1, stop_when_flat=True), SMALL, tiny_data)
    assert flat.flat is not None and flat.finished == flat.ran == flat.flat.finished < 40
    assert flat.flat.plateau.flat_for == flat.flat.patience  # one at a time: stopped as soon as it held
    again = run_trials(settings(tmp_path, study="flat", trials=40, epochs=1, stop_when_flat=True), SMALL, tiny_data)
    assert again.ran == 0 and again.flat == flat.flat  # resumed after its rule held: done already
    full = run_trials(settings(tmp_path, study="full", trials=flat.finished + 2, epochs=1), SMALL, tiny_data)
    assert full.flat is None and full.ran == full.finished == flat.finished + 2
    assert [t.value for t in full.study.trials[: flat.finished]] == [t.value for t in flat.study.trials]


def test_stop_when_flat_lets_the_trials_in_flight_finish(tmp_path: Path, tiny_data: DeviceData) -> None:
    chosen = settings(tmp_path, trials=40, epochs=1, stop_when_flat=True, parallel=2)
    outcome = run_trials(chosen, SMALL, tiny_data)
    assert outcome.flat is not None and outcome.flat.finished <= outcome.finished <= outcome.flat.finished + 1 < 40
    assert {t.state for t in outcome.study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}


def test_stop_when_flat_is_refused_for_several_objectives(tmp_path: Path) -> None:
    with pytest.raises(MnistBenchError, match=r"--stop-when-flat: watches the best accuracy of one objective"):
        settings(tmp_path, objectives=("accuracy", "latency"), sampler="nsga2", stop_when_flat=True)
