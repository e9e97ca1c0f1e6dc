"""Several processes on one study: SQLite and PostgreSQL, SIGKILL and SIGINT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from mnist_bench.errors import MnistBenchError
from mnist_bench.search.capacity import auto_workers
from mnist_bench.search.loop import open_study
from mnist_bench.search.records import StudyRecord, TrialRecord, record_rung
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SURPLUS, SearchSettings
from mnist_bench.search.workers import WorkerJob, plan_devices, plan_workers, run_workers
from mnist_bench.storage.rdb import heartbeat_ages, open_storage

SMALL = SearchSpace(depth=(1, 2), width=(8, 64), batch_sizes=(32, 64))


def test_plan_devices() -> None:
    assert plan_devices("cpu", 3) == ["cpu", "cpu", "cpu"]
    assert plan_devices("cpu,cpu", 3) == ["cpu"] * 3
    with pytest.raises(MnistBenchError, match="--workers 0"):
        plan_devices("cpu", 0)
    with pytest.raises(MnistBenchError, match="device 'cuda:7'"):
        plan_devices("cpu,cuda:7", 2)


def run_parallel(storage: str, tiny_mnist: Path, *, workers: int, trials: int, study: str = "p") -> optuna.Study:
    settings = SearchSettings(study=study, storage=storage, trials=trials, epochs=2, seed=0, val_size=100)
    created = open_study(settings, SMALL, open_storage(storage))
    job = WorkerJob(settings, SMALL, tiny_mnist, False, tuple(plan_devices("cpu", workers)))
    outcome = run_workers(job, created)
    assert outcome.ran >= trials
    return optuna.load_study(study_name=study, storage=storage)


def check_exactly(study: optuna.Study, trials: int) -> None:
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == trials
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    # The only failures allowed are workers' surplus asks, which never trained.
    for trial in study.get_trials(states=(TrialState.FAIL,)):
        assert trial.user_attrs.get("reason", "").startswith("surplus")


def test_two_workers_on_sqlite_finish_exactly_the_target(tmp_path: Path, tiny_mnist: Path) -> None:
    study = run_parallel(f"sqlite:///{tmp_path / 's.db'}", tiny_mnist, workers=2, trials=6)
    check_exactly(study, 6)
    # Seeded alike, two workers would propose identical parameters; each has its own offset.
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params)


def test_two_workers_prune_a_multi_objective_study_by_each_others_rung_values(tmp_path: Path, tiny_mnist: Path) -> None:
    """Each worker ranks its trials at a rung against every trial stored there, the other
    worker's and this process's too, and stops those outside the top third (a trial stored
    first with perfect accuracy and no parameters makes that most of them); the study still
    finishes exactly."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    settings = SearchSettings(
        study="mo", storage=storage, trials=7, epochs=1, seed=0, val_size=100, objectives=("accuracy", "params"),
        reports_per_epoch=3,
    )  # fmt: skip
    created = open_study(settings, SMALL, open_storage(storage))
    perfect = created.ask()
    record_rung(perfect, 1, (1.0, 0.0))
    created.tell(perfect, state=TrialState.PRUNED)
    run_workers(WorkerJob(settings, SMALL, tiny_mnist, False, ("cpu", "cpu")), created)
    study = optuna.load_study(study_name="mo", storage=storage)
    check_exactly(study, 7)
    trained = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))[1:]
    assert all(1 in TrialRecord.of(t).rung_values for t in trained) and StudyRecord.of(study).pruner == "asha"
    pruned = [t for t in trained if t.state == TrialState.PRUNED]
    # Up to 5 at the rung, one goes on (the perfect one): only a trial that finds 5 or more
    # there before it may go on, and at most 3 can (both workers store and read at once).
    assert len(pruned) >= 3
    for trial in pruned:
        ranked = re.fullmatch(
            r"pruned by asha \(multi-objective\) after [\d.]+ epochs: rank (\d+) of (\d+) at report 1",
            TrialRecord.of(trial).reason,
        )
        assert ranked is not None, TrialRecord.of(trial).reason
        # Ranked with every trial that had stored its values before it started, whoever ran it.
        before = [t for t in trained if t.datetime_complete < trial.datetime_start]  # type: ignore[operator]
        assert int(ranked.group(1)) >= 2 and 2 + len(before) <= int(ranked.group(2)) <= 7


def test_parallel_trials_match_sequential_ones(tmp_path: Path, tiny_mnist: Path) -> None:
    """The same parameters and trial numbers give the same accuracy, whoever trains them."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    sequential = SearchSettings(study="seq", storage=storage, trials=4, epochs=2, seed=0, val_size=100)
    job = WorkerJob(sequential, SMALL, tiny_mnist, False, ("cpu",))
    run_workers(job, open_study(sequential, SMALL, open_storage(storage)))
    first = optuna.load_study(study_name="seq", storage=storage)

    parallel = SearchSettings(study="par", storage=storage, trials=4, epochs=2, seed=0, val_size=100)
    study = open_study(parallel, SMALL, open_storage(storage))
    for trial in first.trials:
        study.enqueue_trial(trial.params)
    run_workers(WorkerJob(parallel, SMALL, tiny_mnist, False, ("cpu", "cpu")), study)
    second = optuna.load_study(study_name="par", storage=storage)
    finished = second.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))  # not a surplus ask
    assert [t.params for t in finished] == [t.params for t in first.trials]
    for a, b in zip(first.trials, finished, strict=True):
        assert b.user_attrs["train_seed"] == a.user_attrs["train_seed"]
        # Workers split the cores, and a different thread count may sum in another order.
        assert b.user_attrs["train_loss"] == pytest.approx(a.user_attrs["train_loss"], rel=1e-3)
        assert b.user_attrs["val_acc"] == pytest.approx(a.user_attrs["val_acc"], abs=0.02)


# One hidden layer of 2**25 units needs 105 GB for its first weight matrix alone.
FRAGILE = SearchSpace(depth=(1, 1), width=(8, 2**25), optimizers=("sgd", "adam"), sgd_lr=(1e-3, 1e6), batch_sizes=(32,))
HUGE = {"n_layers": 1, "width_0": 2**25, "optimizer": "adam", "adam_lr": 1e-3, "batch_size": 32}
EXPLOSIVE = {"n_layers": 1, "width_0": 16, "optimizer": "sgd", "sgd_lr": 1e6, "sgd_momentum": 0.9, "batch_size": 32}
SANE = {"n_layers": 1, "width_0": 32, "optimizer": "adam", "adam_lr": 3e-3, "batch_size": 32}


def search_under_memory_limit(storage: str, data_dir: str) -> None:
    """Run in a child process: two workers on a study whose first trials run out of memory
    and diverge. The limit on address space makes the allocation fail for real, at once,
    whatever the machine's memory and overcommit settings; the workers inherit it."""
    import resource  # noqa: PLC0415

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, hard))
    settings = SearchSettings(study="fragile", storage=storage, trials=4, epochs=2, seed=0, val_size=100)
    study = open_study(settings, FRAGILE, open_storage(storage))
    # Exactly the trials that reach the target: nothing is left to the sampler.
    for params in (HUGE, EXPLOSIVE, SANE, HUGE, SANE, SANE):
        study.enqueue_trial(params, skip_if_exists=False)
    run_workers(WorkerJob(settings, FRAGILE, Path(data_dir), False, ("cpu", "cpu")), study)


def test_a_packed_trial_that_fails_fails_alone(tmp_path: Path, tiny_mnist: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'f.db'}"
    call = f"search_under_memory_limit({storage!r}, {str(tiny_mnist)!r})"
    code = f"from tests.test_workers import search_under_memory_limit; {call}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="fragile", storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 4  # the failures did not count, and did not stop the search
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    # When both workers ask at the same moment for the last place, one gets a surplus trial:
    # stored as failed with its reason, never trained. Whether that happens is timing.
    surplus = [t for t in failed if t.user_attrs.get("reason") == SURPLUS]
    assert all(not t.intermediate_values for t in surplus)  # no epoch reported: it did not train
    out_of_memory = [t for t in failed if t not in surplus]
    assert len(out_of_memory) == 2 and all(t.params["width_0"] == 2**25 for t in out_of_memory)
    assert all("memory" in t.user_attrs["reason"] for t in out_of_memory)
    diverged = [t for t in study.trials if "diverged" in t.user_attrs.get("reason", "")]
    assert len(diverged) == 1 and diverged[0].state == TrialState.PRUNED
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3
    assert len(study.trials) == 6 + len(surplus)


def search_command(tmp_path: Path, tiny_mnist: Path, *extra: str, epochs: int = 1000) -> list[str]:
    # One narrow layer, one batch size: every trial takes about as long, a few seconds.
    # A rerun that only has to finish the study passes few epochs: a study keeps no epoch count.
    (tmp_path / "steady.toml").write_text("depth = [1, 1]\nwidth = [16, 32]\nbatch_sizes = [64]\n")
    return [
        sys.executable, "-m", "mnist_bench", "search", "--trials", "3", "--epochs", str(epochs), "--seed", "0",
        "--space", str(tmp_path / "steady.toml"),
        "--val-size", "100", "--pruner", "none", "--data-dir", str(tiny_mnist), "--no-verify",
        "--studies-dir", str(tmp_path), "--device", "cpu", "--heartbeat", "1", *extra,
    ]  # fmt: skip


def wait_for_running(
    storage: str, process: subprocess.Popen[str], timeout: float = 60, study: str = "mnist-mlp"
) -> int:
    """The number of a trial of ``study`` that is RUNNING in ``storage``, and training, while ``process`` lives.

    Training (an epoch reported), not just RUNNING: a trial is RUNNING from the moment it is
    asked for, before its parameters are all chosen, and a retry keeps only those it had.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            loaded = optuna.load_study(study_name=study, storage=storage)
            training = [t for t in loaded.get_trials(states=(TrialState.RUNNING,)) if t.intermediate_values]
            if training:
                return training[0].number
        except KeyError:
            pass
        time.sleep(0.2)
    raise AssertionError("no trial started training")


# Killed, then run again after the grace (the same command at once, K in flight too, is the next test's).
@pytest.mark.parametrize("parallel", ["1"])
def test_sigkill_mid_trial_is_recovered_on_the_next_run(tmp_path: Path, tiny_mnist: Path, parallel: str) -> None:
    storage = f"sqlite:///{tmp_path / 'mnist-bench.db'}"
    command = search_command(tmp_path, tiny_mnist, "--parallel", parallel)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    killed = wait_for_running(storage, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    study = optuna.load_study(study_name="mnist-mlp", storage=storage)
    assert study.trials[killed].state == TrialState.RUNNING  # left behind, as a crash leaves it
    time.sleep(4)  # past the grace period: 3 heartbeats of 1 s

    rerun = subprocess.run(
        search_command(tmp_path, tiny_mnist, "--parallel", parallel, epochs=2), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    study = optuna.load_study(study_name="mnist-mlp", storage=storage)
    assert study.trials[killed].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == study.trials[killed].params
    assert retries[0].user_attrs["train_seed"] == study.trials[killed].user_attrs["train_seed"]
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3
    assert not study.get_trials(states=(TrialState.RUNNING,))


def wait_for_training(storage: str, process: subprocess.Popen[str], count: int) -> list[int]:
    """The numbers of ``count`` RUNNING trials that beat and train (an epoch reported), while ``process`` lives.

    Not just RUNNING: a trial beats from the moment it is asked for, before its parameters
    are all chosen, and a retry keeps only those its trial had.
    """
    deadline = time.monotonic() + 120
    rdb = open_storage(storage)
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            study = optuna.load_study(study_name="mnist-mlp", storage=rdb)
        except KeyError:
            time.sleep(0.2)
            continue
        ages = heartbeat_ages(rdb, study._study_id)
        training = [t.number for t in study.get_trials(states=(TrialState.RUNNING,)) if t.intermediate_values]
        if len(ages) == count and sorted(training) == sorted(ages):
            return sorted(ages)
        time.sleep(0.2)
    raise AssertionError(f"{count} trial(s) never trained")


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_sigkill_then_the_same_command_at_once_waits_out_the_grace_and_finishes(
    tmp_path: Path, tiny_mnist: Path, parallel: str
) -> None:
    """Killed mid-trial and run again at once, a search waits for the killed trials' grace
    period, retries them and reaches its target, instead of ending with them RUNNING."""
    storage = f"sqlite:///{tmp_path / 'mnist-bench.db'}"
    # As many trials as run side by side: the kill leaves every place to a dead worker.
    extra = ("--trials", parallel, "--parallel", parallel, "--heartbeat", "2")  # a 6 s grace
    process = subprocess.Popen(search_command(tmp_path, tiny_mnist, *extra, epochs=100_000), stdout=subprocess.PIPE)
    killed = wait_for_training(storage, process, int(parallel))
    process.send_signal(signal.SIGKILL)
    process.wait()

    # "At once" whatever this machine's load: until the rerun has started and opened the
    # study, this test beats for the killed trials, so that their last beat is as recent as
    # a rerun straight after the kill would find it.
    rdb = open_storage(storage)
    trial_ids = [t._trial_id for t in optuna.load_study(study_name="mnist-mlp", storage=rdb).trials]
    started = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in trial_ids:
                rdb.record_heartbeat(trial_id)
            if started.wait(1.0):
                return

    beating = threading.Thread(target=beat)
    beating.start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = search_command(tmp_path, tiny_mnist, *extra, epochs=2)
    rerun = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert rerun.stdout is not None
        first = rerun.stdout.readline()  # "Study mnist-mlp in ...": the study is open, the search begins
    finally:
        started.set()
        beating.join()
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert first.startswith("Study mnist-mlp") and f"{parallel} trial(s) so far" in first, first
    waits = [line for line in out.splitlines() if line.startswith("Waiting ")]
    whose = "trial 0, whose worker" if killed == [0] else "trials 0 and 1, whose workers"
    assert len(waits) == 1 and f" s for {whose} stopped, to be retried." in waits[0], out
    assert f"{parallel}/{parallel} finished" in out and "Run the same command again" not in out
    study = optuna.load_study(study_name="mnist-mlp", storage=storage)
    assert [study.trials[n].state for n in killed] == [TrialState.FAIL] * len(killed)
    retries = {t.system_attrs.get("failed_trial"): t for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert sorted(retries) == killed  # each killed trial retried once, with its parameters
    assert all(retries[n].params == study.trials[n].params for n in killed)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_a_live_workers_trial_is_not_taken_by_a_second_run(tmp_path: Path, tiny_mnist: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'mnist-bench.db'}"
    first = subprocess.Popen(
        search_command(tmp_path, tiny_mnist, "--heartbeat", "3", epochs=100_000), stdout=subprocess.PIPE, text=True
    )
    try:
        running = wait_for_running(storage, first)
        # A second run that the first one's trial would complete: it watches that trial's
        # heartbeats, sees them go on, and leaves it to the first run.
        second = subprocess.run(
            search_command(tmp_path, tiny_mnist, "--heartbeat", "3", "--trials", "1", epochs=2),
            capture_output=True,
            text=True,
        )
        assert second.returncode == 0, second.stderr
        assert "Waiting " not in second.stdout and "Ran 0 trial(s)" in second.stdout, second.stdout
        assert "0/1 finished" in second.stdout and first.poll() is None
        study = optuna.load_study(study_name="mnist-mlp", storage=storage)
        assert [(t.number, t.state) for t in study.trials] == [(running, TrialState.RUNNING)]
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)


# One process, and two workers (--parallel 2 stops through the same flag: test_lanes' interrupt test).
@pytest.mark.parametrize("workers, parallel", [("1", "1"), ("2", "1")])
def test_sigint_stops_cleanly_and_the_study_resumes(
    tmp_path: Path, tiny_mnist: Path, workers: str, parallel: str
) -> None:
    storage = f"sqlite:///{tmp_path / 'mnist-bench.db'}"
    process = subprocess.Popen(
        search_command(tmp_path, tiny_mnist, "--workers", workers, "--parallel", parallel),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    interrupted = wait_for_running(storage, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Interrupted: run the same command again" in err and "Traceback" not in err
    if workers != "1":  # --workers through the command line, as the user types it
        assert f"{workers} workers on cpu" in out
    assert (tmp_path / "mnist-mlp" / "leaderboard.csv").is_file()
    study = optuna.load_study(study_name="mnist-mlp", storage=storage)
    trial = study.trials[interrupted]
    assert trial.state == TrialState.FAIL and trial.user_attrs["reason"].startswith("interrupted")
    assert not study.get_trials(states=(TrialState.RUNNING,))

    rerun = subprocess.run(search_command(tmp_path, tiny_mnist, epochs=2), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "3/3 finished" in rerun.stdout


@pytest.mark.parametrize("workers", ["0", "many"])
def test_bad_worker_counts_rejected(tmp_path: Path, tiny_mnist: Path, workers: str) -> None:
    result = subprocess.run(search_command(tmp_path, tiny_mnist, "--workers", workers), capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith(f"Error: --workers {workers}")
    assert result.stderr.count("\n") == 1


def test_plan_workers_auto_on_the_cpu() -> None:
    planned, line = plan_workers("auto", "cpu", SMALL, val_size=100)
    expected = auto_workers(torch.device("cpu"), SMALL, n_train=59_900, n_eval=100).workers
    assert planned == ["cpu"] * expected and line is not None and line.startswith(f"auto: {expected} worker(s) on cpu")
    assert plan_workers("3", "cpu", SMALL, val_size=100) == (["cpu"] * 3, None)


def test_auto_workers_through_the_cli(tmp_path: Path, tiny_mnist: Path) -> None:
    command = search_command(tmp_path, tiny_mnist, "--workers", "auto", "--trials", "3", epochs=2)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "auto: " in result.stdout and "bound by" in result.stdout and "3/3 finished" in result.stdout
