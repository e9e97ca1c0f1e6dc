from __future__ import annotations

import gc
import itertools
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from mnist_bench.cli import app
from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.model import ModelConfig
from mnist_bench.search.loop import run_trials, trial_config
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SearchSettings
from mnist_bench.training.device import DeviceFault, device_fault
from mnist_bench.training.lanes import MakeTraining, Slot, lanes_for, parse_parallel, run_in_flight
from mnist_bench.training.trainer import Training, train

SMALL = SearchSpace(depth=(1, 2), width=(8, 48), batch_sizes=(32, 64))
CPU = torch.device("cpu")


def configs(n: int) -> list[TrainConfig]:
    return [
        TrainConfig(ModelConfig((16 + 8 * i,)), "sgd" if i % 2 else "adam", 0.05 if i % 2 else 1e-3,
                    momentum=0.9 if i % 2 else 0.0, batch_size=32, epochs=2 + i % 3, seed=i)
        for i in range(n)
    ]  # fmt: skip


class Broken(Training):
    """A training whose second epoch fails, as one that runs out of memory does."""

    def run_chunk(self) -> float | None:
        if self.epoch == 1:
            raise RuntimeError("CUDA out of memory (stand-in)\nsecond line")
        return super().run_chunk()


def test_each_training_in_flight_trains_what_it_would_alone(tiny_data: DeviceData) -> None:
    todo = configs(5)
    finished: dict[int, tuple[Training | None, str | None]] = {}
    order: list[int] = []

    def start(_lane: int) -> tuple[int, MakeTraining] | None:
        if not todo:
            return None
        config = todo.pop(0)
        kind = Broken if config.seed == 2 else Training
        return config.seed, lambda stream: kind(config, tiny_data, stream=stream)

    def judge(slot: Slot[int]) -> bool:
        order.append(slot.tag)
        if slot.error is not None or (slot.training is not None and slot.training.done):
            finished[slot.tag] = (slot.training, slot.error)
            return True
        return False

    assert run_in_flight(3, start, judge, lambda slot, reason: None, device=CPU) == 5
    assert order[:3] == [0, 1, 2]  # judged in lane order, round by round
    error = finished[2][1]
    assert error == "RuntimeError: CUDA out of memory (stand-in)"  # failed alone, one line
    for config in configs(5):
        if config.seed == 2:
            continue
        alone = train(config, tiny_data)
        together = finished[config.seed][0]
        assert together is not None
        assert together.val_accs == list(alone.val_accs) and together.train_loss == list(alone.train_loss)
        for a, b in zip(alone.model.parameters(), together.model.parameters(), strict=True):
            assert torch.equal(a, b)


class Recorded(Training):
    """A training that notes which thread built it and ran each of its chunks (whole epochs
    here), and when it was released."""

    log: list[tuple[str, int, str]] = []

    def __init__(self, config: TrainConfig, data: DeviceData, **kw: object) -> None:
        self.log.append(("build", config.seed, threading.current_thread().name))
        super().__init__(config, data, **kw)  # type: ignore[arg-type]

    def run_chunk(self) -> float | None:
        self.log.append(("epoch", self.config.seed, threading.current_thread().name))
        return super().run_chunk()

    def release(self) -> None:
        self.log.append(("release", self.config.seed, threading.current_thread().name))
        super().release()


def test_each_lane_builds_and_trains_on_one_thread_of_its_own(tiny_data: DeviceData) -> None:
    """Lanes own their thread for the whole run, on a CPU as on CUDA (where each also owns a stream):
    a lane's trainings are built and trained on it, and each is released before its lane
    builds the next."""
    todo = configs(7)
    lane_of: dict[int, int] = {}
    Recorded.log = []

    def start(lane: int) -> tuple[int, MakeTraining] | None:
        if not todo:
            return None
        config = todo.pop(0)
        lane_of[config.seed] = lane
        return config.seed, lambda stream: Recorded(config, tiny_data, stream=stream)

    def judge(slot: Slot[int]) -> bool:
        assert slot.training is not None
        return slot.training.done

    assert run_in_flight(3, start, judge, lambda slot, reason: None, device=CPU) == 7
    threads: dict[int, set[str]] = {}
    for event, seed, thread in Recorded.log:
        if event != "release":
            threads.setdefault(lane_of[seed], set()).add(thread)
    assert all(len(names) == 1 for names in threads.values())  # one thread per lane, for the run
    assert len({name for names in threads.values() for name in names}) == 3  # and no two lanes share one
    for seed, lane in lane_of.items():  # on each lane, the previous training is released before the next is built
        later = [s for s in lane_of if lane_of[s] == lane and s > seed]
        if later:
            events = [(e, s) for e, s, _ in Recorded.log]
            assert events.index(("release", seed)) < events.index(("build", later[0]))


def test_a_failed_training_is_not_kept_alive_by_its_error(tiny_data: DeviceData) -> None:
    """A failure is kept as one line, not as the exception: its traceback would hold the
    training (model, graph, memory pool) alive until a full garbage collection."""
    alive: list[weakref.ref[torch.nn.Module]] = []
    todo = [configs(1)[0]]

    def make(stream: object) -> Training:
        training = Broken(todo[0], tiny_data)
        alive.append(weakref.ref(training.model))
        return training

    def start(_lane: int) -> tuple[int, MakeTraining] | None:
        return (0, make) if not alive else None

    gc.disable()  # only reference counting frees it now, as between two full collections
    try:
        run_in_flight(1, start, lambda slot: slot.error is not None, lambda slot, reason: None, device=CPU)
        assert alive and alive[0]() is None
    finally:
        gc.enable()


def test_lanes_refuse_more_than_the_stream_pool() -> None:
    with pytest.raises(MnistBenchError, match="between 1 and 32"):
        lanes_for(33, CPU)
    lanes = lanes_for(2, CPU)
    assert [lane.run(threading.current_thread) for lane in lanes] != [threading.current_thread()] * 2
    assert all(lane.stream is None for lane in lanes)  # streams on CUDA only


def test_every_run_trains_on_the_devices_own_lanes(tiny_data: DeviceData) -> None:
    """Lane i of a device is one thread for the process's life: a second run (a retrain
    after a search, bench's next round) trains on the same threads, and makes none."""

    def one_run(k: int) -> set[threading.Thread]:
        todo, threads = configs(k), set()

        def start(_lane: int) -> tuple[int, MakeTraining] | None:
            if not todo:
                return None
            config = todo.pop(0)

            def make(stream: torch.cuda.Stream | None) -> Training:
                threads.add(threading.current_thread())  # the object: an ident is reused
                return Training(config, tiny_data, stream=stream)

            return config.seed, make

        run_in_flight(k, start, lambda slot: slot.training is not None and slot.training.done, lambda *_: None,
                      device=CPU)  # fmt: skip
        return threads

    first = one_run(3)
    alive = threading.active_count()
    assert one_run(3) == first and len(first) == 3
    assert threading.active_count() == alive


def test_cuda_lanes_take_one_stream_per_slot_across_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuBLAS keeps a workspace per (handle, stream) until the process ends: streams are taken
    once per lane, however many runs open lanes (the CPU has none: a stand-in counts them)."""
    from mnist_bench.training import lanes as lanes_module

    taken: list[int] = []

    class StandInStream:
        def __init__(self, device: torch.device) -> None:
            taken.append(len(taken))
            self.cuda_stream = len(taken)

    monkeypatch.setattr(torch.cuda, "Stream", StandInStream)
    monkeypatch.setattr(lanes_module, "_LANES", {})
    cuda = torch.device("cuda", 0)
    for k in (3, 3, 2, 5, 3):
        assert [lane.index for lane in lanes_for(k, cuda)] == list(range(k))
    assert len(taken) == 5  # the most lanes any run had


def test_parallel_option_values() -> None:
    assert parse_parallel("4", CPU) == 4 and parse_parallel("auto", CPU) == 1
    for bad in ("0", "-1", "many", "33"):
        with pytest.raises(MnistBenchError, match="--parallel"):
            parse_parallel(bad, CPU)


def settings(tmp_path: Path, name: str, **extra: object) -> SearchSettings:
    values: dict[str, object] = dict(study=name, storage=f"sqlite:///{tmp_path / 's.db'}", trials=7, epochs=3, seed=0,
                                     val_size=100, parallel=3)  # fmt: skip
    values.update(extra)
    return SearchSettings(**values)  # type: ignore[arg-type]


def test_search_in_flight_is_exact_repeatable_and_trains_each_trial_as_alone(
    tmp_path: Path, tiny_data: DeviceData
) -> None:
    first = run_trials(settings(tmp_path, "a"), SMALL, tiny_data).study
    again = run_trials(settings(tmp_path, "b"), SMALL, tiny_data).study
    finished = first.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(first.trials) == len(finished) == 7  # --trials is an exact total
    assert [(t.params, t.state, t.user_attrs["val_acc"]) for t in first.trials] == [
        (t.params, t.state, t.user_attrs["val_acc"]) for t in again.trials
    ]  # --seed repeats the study trial for trial
    for trial in first.get_trials(states=(TrialState.COMPLETE,)):
        alone = train(trial_config(first, trial, epochs=3), tiny_data)
        assert list(alone.val_accs) == trial.user_attrs["val_acc"]
    assert all(t.user_attrs["device"] == "cpu" for t in first.trials)


def test_diverging_trials_in_flight_are_pruned_alone(tmp_path: Path, tiny_data: DeviceData) -> None:
    wild = SearchSpace(depth=(1, 1), width=(8, 16), optimizers=("sgd",), sgd_lr=(1e4, 1e5), batch_sizes=(32,))
    study = run_trials(settings(tmp_path, "wild", trials=4), wild, tiny_data).study
    assert all(t.state == TrialState.PRUNED for t in study.trials) and len(study.trials) == 4
    assert all(t.user_attrs["reason"].startswith("diverged") for t in study.trials)


class StopAfter:
    """A stop flag that turns on after ``n`` looks: the trainer looks once per batch."""

    def __init__(self, n: int) -> None:
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_interrupt_fails_what_was_in_flight_and_the_study_resumes(tmp_path: Path, tiny_data: DeviceData) -> None:
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of the second round's epochs
        run_trials(settings(tmp_path, "int"), SMALL, tiny_data, stop=StopAfter(50))
    study = optuna.load_study(study_name="int", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 3 and all(t.user_attrs["reason"].startswith("interrupted") for t in failed)
    outcome = run_trials(settings(tmp_path, "int"), SMALL, tiny_data)
    assert outcome.finished == 7


def test_cli_parallel(tmp_path: Path, tiny_mnist: Path) -> None:
    (tmp_path / "s.toml").write_text("depth = [1, 1]\nwidth = [8, 16]\nbatch_sizes = [64]\n")
    args = ["search", "--trials", "4", "--epochs", "2", "--val-size", "100", "--space", str(tmp_path / "s.toml"),
            "--data-dir", str(tiny_mnist), "--no-verify", "--studies-dir", str(tmp_path),
            "--device", "cpu"]  # fmt: skip
    runner = CliRunner()
    ok = runner.invoke(app, [*args, "--parallel", "2"])
    assert ok.exit_code == 0, ok.output
    assert "2 trials side by side" in ok.stdout and "4/4 finished" in ok.stdout
    for bad in ("0", "-3"):
        result = runner.invoke(app, [*args, "--parallel", bad, "--study", "other"])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
        assert result.stderr.startswith("Error: Invalid value for --parallel")


class Faulting(Training):
    """A training whose second epoch hits a sticky device fault, as an illegal address does."""

    def run_chunk(self) -> float | None:
        if self.epoch == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nCompile with TORCH_USE_CUDA_DSA")
        return super().run_chunk()


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_device_fault_ends_the_search_at_once_and_the_same_command_resumes(
    tmp_path: Path, tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    """After a sticky fault every later trial in the process would fail at once: the run stops,
    what was in flight fails with the fault as its reason, and a new process finishes the study."""
    import mnist_bench.training.lanes as lanes_module

    built: list[int] = []

    class FaultsOnce(Faulting):
        def __init__(self, config: TrainConfig, data: DeviceData, **kw: object) -> None:
            built.append(config.seed)
            super().__init__(config, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(lanes_module, "Training", FaultsOnce)
    with pytest.raises(DeviceFault) as fault:
        run_trials(settings(tmp_path, "fault", parallel=parallel), SMALL, tiny_data)
    message = str(fault.value)
    assert "\n" not in message and "an illegal memory access was encountered" in message
    assert "run the same command again to resume" in message and f"{parallel} training(s) in flight" in message
    assert len(built) == parallel  # none started after the fault
    study = optuna.load_study(study_name="fault", storage=f"sqlite:///{tmp_path / 's.db'}")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == parallel and not study.get_trials(states=(TrialState.RUNNING,))
    assert all(
        t.user_attrs["reason"].startswith("device fault: RuntimeError: CUDA error: an illegal memory") for t in failed
    )
    monkeypatch.undo()
    assert run_trials(settings(tmp_path, "fault", parallel=parallel), SMALL, tiny_data).finished == 7


def test_an_out_of_memory_trial_is_no_device_fault() -> None:
    assert device_fault(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")) is None
    assert device_fault(RuntimeError("CUDA error: unspecified launch failure\nmore")) == (
        "RuntimeError: CUDA error: unspecified launch failure"
    )


def test_memory_is_given_back_between_rounds_while_no_lane_trains(
    tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emptying the cache while another lane captures would free what it records into:
    memory goes back only between rounds, and only after trainings were released."""
    import mnist_bench.training.lanes as inflight_module

    busy = 0
    lock = threading.Lock()
    calls: list[int] = []

    class Counted(Training):
        def run_chunk(self) -> float | None:
            nonlocal busy
            with lock:
                busy += 1
            try:
                return super().run_chunk()
            finally:
                with lock:
                    busy -= 1

    monkeypatch.setattr(inflight_module, "give_back_memory", lambda device: calls.append(busy))
    todo = configs(5)

    def start(_lane: int) -> tuple[int, MakeTraining] | None:
        if not todo:
            return None
        config = todo.pop(0)
        return config.seed, lambda stream: Counted(config, tiny_data, stream=stream)

    def judge(slot: Slot[int]) -> bool:
        assert slot.training is not None
        return slot.training.done

    run_in_flight(3, start, judge, lambda slot, reason: None, device=CPU)
    assert calls and all(b == 0 for b in calls)
    assert len(calls) <= 5  # once per round that released something, not per training


def test_compile_with_trainings_in_flight_is_refused_in_one_line(tmp_path: Path, tiny_mnist: Path) -> None:
    args = ["search", "--trials", "2", "--epochs", "1", "--data-dir", str(tiny_mnist), "--no-verify",
            "--studies-dir", str(tmp_path), "--device", "cpu", "--compile", "--parallel", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: --compile trains one trial at a time: use --parallel 1, not 2")
    assert not list(tmp_path.glob("*.db"))  # refused before any study was made


def test_the_exclusive_build_holds_only_device_work(
    tmp_path: Path, tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search's new trainings draw their initial weights and compute their rate tables on
    their own lanes, all before the first exclusive build of their round, and never inside
    one: the build, one lane at a time while none trains, holds only device work."""
    import mnist_bench.training.lanes as lanes_module
    import mnist_bench.training.start as start_module

    ticks, lock = itertools.count(), threading.Lock()
    log: list[tuple[str, str, int, int]] = []  # (phase, thread, start, end), in ticks of one counter

    def recorded(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kw: Any) -> Any:
            with lock:
                start = next(ticks)
            try:
                return fn(*args, **kw)
            finally:
                with lock:
                    log.append((phase, threading.current_thread().name, start, next(ticks)))

        return run

    monkeypatch.setattr(start_module, "initial_weights", recorded("weights", start_module.initial_weights))
    monkeypatch.setattr(start_module, "schedule_table", recorded("table", start_module.schedule_table))
    monkeypatch.setattr(lanes_module, "_build", recorded("build", lanes_module._build))
    study = run_trials(settings(tmp_path, "host"), SMALL, tiny_data).study
    builds = [(start, end) for phase, _, start, end in log if phase == "build"]
    host = [(phase, thread, start, end) for phase, thread, start, end in log if phase != "build"]
    assert len(builds) == len(study.trials) == 7
    assert sorted(phase for phase, *_ in host) == ["table"] * 7 + ["weights"] * 7  # once each, no redraw
    for _, _, start, end in host:  # (b) none inside an exclusive build
        assert all(end < b_start or start > b_end for b_start, b_end in builds)
    lane_threads = {lane.run(lambda: threading.current_thread().name) for lane in lanes_for(3, CPU)}  # the search's
    first_round = sorted(host, key=lambda h: h[2])[:6]  # the first three trainings' weights and tables
    assert {thread for _, thread, _, _ in first_round} == lane_threads  # (a) each on its own lane
    assert max(end for *_, end in first_round) < min(start for start, _ in builds)  # before the first build
    assert {thread for _, thread, _, _ in host} == lane_threads


def test_a_search_measures_each_trials_latency_on_its_lane(
    tmp_path: Path, tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completed trial's latency is measured by its lane, on the lane's thread (and on CUDA
    its stream), as its last epoch ends: judging it on the main thread waits on no device."""
    import mnist_bench.search.study as study_module
    import mnist_bench.training.trainer as trainer_module

    measured: list[tuple[threading.Thread, float]] = []

    def on_lane(model: torch.nn.Module, device: torch.device, **kw: object) -> float:
        measured.append((threading.current_thread(), 0.5 + len(measured)))
        return measured[-1][1]

    def on_main(model: torch.nn.Module, device: torch.device, **kw: object) -> float:
        raise AssertionError("measured on the main thread")

    monkeypatch.setattr(trainer_module, "latency_ms", on_lane)
    monkeypatch.setattr(study_module, "latency_ms", on_main)
    study = run_trials(settings(tmp_path, "latency"), SMALL, tiny_data).study
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and len(measured) == len(complete)  # the pruned and diverged ones: none
    lane_threads = {lane.run(threading.current_thread) for lane in lanes_for(3, CPU)}  # the search's
    assert {thread for thread, _ in measured} <= lane_threads and threading.main_thread() not in lane_threads
    assert sorted(t.user_attrs["latency_ms"] for t in complete) == [value for _, value in measured]
