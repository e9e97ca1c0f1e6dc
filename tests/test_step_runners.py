from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.measure.doctor import CONFIGS as DOCTOR_CONFIGS
from mnist_bench.model import ModelConfig
from mnist_bench.optimizers import sgd_step
from mnist_bench.training import device as device_module
from mnist_bench.training import step_runners as runners
from mnist_bench.training.start import make_step, schedule_table
from mnist_bench.training.step_runners import GraphedRunner, NotCapturable
from mnist_bench.training.trainer import Training

# Every option a step has, as doctor checks them: momentum under one-cycle (which cycles
# it), max-norm, weight decay, schedules, dropout, label smoothing, augmentation. Six
# epochs of batch 32 over 500 images (about 100 steps) leave a partial last batch (20
# images), which the graphed runner steps eagerly.
CONFIGS = {name: replace(config, epochs=6) for name, config in DOCTOR_CONFIGS.items()}
SGD_ONECYCLE, ADAM = "SGD momentum + one-cycle + max-norm", "Adam"


def assert_same_training(a: Training, b: Training, *, rtol: float, atol: float) -> None:
    losses = [torch.tensor(training.run_to_end().train_loss) for training in (a, b)]
    torch.testing.assert_close(*losses, rtol=rtol, atol=atol)
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=name)


def static(config: TrainConfig, data: DeviceData, *, reports_per_epoch: int = 1) -> Training:
    """A training whose steps run through the graphed runner's static step (no graph: CPU)."""
    training = Training(config, data, reports_per_epoch=reports_per_epoch)
    training.runner = GraphedRunner(step_of(training), capture=False)
    return training


def step_of(training: Training) -> runners.TrainStep:
    generator, augment = training.generator, training.augment
    table = schedule_table(training.config, training.data.x_train.shape[0])
    return make_step(training.model, training.config, training.data, Runtime(), generator=generator, augment=augment,
                     table=table)  # fmt: skip


@pytest.mark.parametrize("name", list(CONFIGS))
def test_static_step_trains_as_the_eager_step_bitwise(name: str, tiny_data: DeviceData) -> None:
    """The step a graph captures, run without the graph on the CPU, against the eager runner
    (~100 steps): one step function, one update, so the same numbers to the bit."""
    config = CONFIGS[name]
    assert_same_training(Training(config, tiny_data), static(config, tiny_data), rtol=0, atol=0)


CHUNKED = [SGD_ONECYCLE, "AdamW + cosine + dropout + label smoothing", "SGD + weight decay + elastic"]


@pytest.mark.parametrize("name", CHUNKED)
@pytest.mark.parametrize("runner", ["eager", "static"])
def test_an_epoch_in_chunks_trains_the_steps_of_an_unbroken_one_bitwise(
    runner: str, name: str, tiny_data: DeviceData
) -> None:
    """Three reports an epoch: the 16 steps of an epoch (15 full batches, one of 20) run as
    6, 5 and 5, each chunk followed by an evaluation that draws no random number. Dropout,
    deformations, the schedule and the graph's device batch counter go on across the cuts,
    so the weights, losses and epoch-end accuracies are those of unbroken epochs."""
    config = replace(CONFIGS[name], epochs=2)
    make = Training if runner == "eager" else static
    whole, parts = make(config, tiny_data), make(config, tiny_data, reports_per_epoch=3)
    whole.run_to_end()
    reported, seen = [], []
    while not parts.done:
        reported.append(parts.run_chunk())
        seen.append(parts.samples)
    assert seen == [192, 352, 500, 692, 852, 1000] and parts.reports == 6 and not parts.mid_epoch
    assert parts.train_loss == whole.train_loss and parts.val_accs == whole.val_accs == reported[2::3]
    for p, q in zip(whole.model.parameters(), parts.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_both_runners_call_the_one_step(tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch of either runner goes through ``TrainStep.__call__``: there is no second step."""
    calls: list[int] = []
    real = runners.TrainStep.__call__

    def counted(self: runners.TrainStep, idx: torch.Tensor) -> None:
        calls.append(idx.shape[0])
        real(self, idx)

    monkeypatch.setattr(runners.TrainStep, "__call__", counted)
    config = replace(CONFIGS[ADAM], epochs=1)
    Training(config, tiny_data).run_to_end()
    eager = list(calls)
    calls.clear()
    static(config, tiny_data).run_to_end()
    assert eager == [32] * 15 + [20]  # 500 images: 15 full batches and one of 20
    assert calls == [32] * runners.WARMUP_STEPS + eager


def test_adam_under_one_cycle_is_not_captured(tiny_data: DeviceData) -> None:
    """One-cycle sets Adam's beta1 from the host every step, which a graph would freeze."""
    config = TrainConfig(ModelConfig((16,)), "adam", 1e-3, batch_size=32, epochs=1, schedule="onecycle")
    training = Training(config, tiny_data)
    with pytest.raises(NotCapturable, match="beta1"):
        GraphedRunner(step_of(training), capture=True)


def test_sgd_step_matches_torch_sgd() -> None:
    """The graphed step's SGD (CUDA captures it; a CPU trains with torch's fused SGD, eager
    and static alike) against the SGD a CUDA eager step uses, rates as floats or tensors."""
    torch.manual_seed(0)
    ours = [torch.randn(5, 3), torch.randn(3)]
    theirs = [p.clone().requires_grad_() for p in ours]
    buffers = [torch.zeros_like(p) for p in ours]
    optimizer = torch.optim.SGD(theirs, lr=0.1, momentum=0.9, weight_decay=0.01, foreach=True)
    for step in range(5):
        grads = [torch.randn_like(p) for p in ours]
        for p, g in zip(ours, grads, strict=True):
            p.grad = g
        for p, g in zip(theirs, grads, strict=True):
            p.grad = g.clone()
        sgd_step(
            ours,
            buffers,
            0.1 if step % 2 else torch.tensor(0.1),
            0.9 if step % 3 else torch.tensor(0.9),
            weight_decay=0.01,
        )
        optimizer.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b.detach())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("reports", [1, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_graphed_training_matches_eager_on_cuda(name: str, reports: int, tiny_data: DeviceData) -> None:
    """Whole epochs of replays, and (reports 3) epochs cut into chunks of replays with an
    evaluation between, against eager whole epochs."""
    cuda = torch.device("cuda")
    data = DeviceData(*(t.to(cuda) for t in (tiny_data.x_train, tiny_data.y_train, tiny_data.x_eval, tiny_data.y_eval)))
    eager = Training(CONFIGS[name], data, runtime=Runtime(graphs=False))
    graphed = Training(CONFIGS[name], data, runtime=Runtime(graphs=True), reports_per_epoch=reports)
    assert graphed.graphed, graphed.eager_reason
    # By construction: the same step and the same update (tensor rates on CUDA, eager too).
    assert_same_training(eager, graphed, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_a_chunk_of_replays_waits_on_no_host_sync(tiny_data: DeviceData) -> None:
    """Cut into chunks, an epoch's replays stay free of host syncs: torch raises on any sync
    while the chunks replay (the partial last batch, stepped eagerly, is left out)."""
    cuda = torch.device("cuda")
    data = DeviceData(*(t.to(cuda) for t in (tiny_data.x_train, tiny_data.y_train, tiny_data.x_eval, tiny_data.y_eval)))
    training = Training(CONFIGS[SGD_ONECYCLE], data, runtime=Runtime(graphs=True), reports_per_epoch=3)
    runner = training.runner
    assert isinstance(runner, GraphedRunner) and runner.graph is not None, training.eager_reason
    perm = torch.randperm(data.x_train.shape[0], device=cuda)
    assert training.stream is not None
    training.stream.wait_stream(torch.cuda.current_stream())  # perm was made on the default stream
    runner.begin(perm)
    torch.cuda.set_sync_debug_mode("error")
    try:
        runner.run(perm, 0, 5, lambda: False)
        runner.run(perm, 5, runner.full_batches, lambda: False)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert runner.batch.item() == runner.full_batches  # the device counter went on across the cut


def test_static_step_training_resumes_exactly(tmp_path: Path, tiny_data: DeviceData) -> None:
    config = CONFIGS[SGD_ONECYCLE]
    whole = static(config, tiny_data)
    whole.run_to_end()
    first = static(config, tiny_data)
    for _ in range(2):
        first.run_epoch()
    first.save_state(tmp_path / "state.pt")
    resumed = static(config, tiny_data)
    assert resumed.resume(tmp_path / "state.pt") == 2
    assert resumed.run_to_end().train_loss == whole.train_loss
    for p, q in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", [SGD_ONECYCLE, "AdamW + cosine + dropout + label smoothing"])
def test_a_failing_capture_trains_eagerly_from_the_start(
    name: str, tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the warm-up or capture raises (here: after one warm-up step had already
    changed the weights, optimizer and generator), the training goes on eagerly from the
    state it started with, and says why."""
    config = replace(CONFIGS[name], epochs=2)
    real_step = GraphedRunner._static_step
    calls = 0

    def second_step_fails(self: GraphedRunner) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("operation not permitted when stream is capturing (stand-in)")
        real_step(self)

    monkeypatch.setattr(GraphedRunner, "_static_step", second_step_fails)
    fallen = Training(config, tiny_data, runtime=Runtime(static_on_cpu=True))
    assert calls == 2 and not fallen.graphed
    assert fallen.eager_reason == "RuntimeError: operation not permitted when stream is capturing (stand-in)"
    assert_same_training(Training(config, tiny_data), fallen, rtol=0, atol=0)  # bitwise: the eager training


def test_the_static_step_stands_in_for_the_graph_on_the_cpu(tiny_data: DeviceData) -> None:
    config = replace(CONFIGS[ADAM], epochs=2)
    training = Training(config, tiny_data, runtime=Runtime(static_on_cpu=True))
    assert isinstance(training.runner, GraphedRunner) and training.runner.graph is None
    assert_same_training(Training(config, tiny_data), training, rtol=1e-5, atol=1e-6)


def test_a_captured_step_needs_its_own_stream(tiny_data: DeviceData) -> None:
    training = Training(CONFIGS[ADAM], tiny_data)
    with pytest.raises(ValueError, match="own stream"):
        GraphedRunner(step_of(training), capture=True, stream=None)


class StandInGraph:
    """Records a capture instead of making one (the CPU has no graphs); ``capture_end`` may fail."""

    end_fails = False

    def __init__(self) -> None:
        self.events: list[str] = []

    def register_generator_state(self, generator: torch.Generator) -> None:
        self.events.append("register")

    def capture_begin(self, **_: object) -> None:
        self.events.append("begin")

    def capture_end(self) -> None:
        self.events.append("end")
        if self.end_fails:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")


def test_a_capture_whose_end_fails_leaves_later_trainings_eager(
    tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch skips its own bookkeeping when capture_end raises, so no later capture in the
    process can be trusted: they train eagerly and say why."""
    monkeypatch.setattr(device_module, "_BROKEN_CAPTURE", [])
    monkeypatch.setattr(torch.cuda, "CUDAGraph", StandInGraph)
    config = replace(CONFIGS["AdamW + cosine + dropout + label smoothing"], epochs=1)
    runner = static(config, tiny_data).runner
    assert isinstance(runner, GraphedRunner)
    runner._capture()  # a capture that ends well: registered the training's generator, begun, ended
    assert isinstance(runner.graph, StandInGraph) and runner.graph.events == ["register", "begin", "end"]
    monkeypatch.setattr(StandInGraph, "end_fails", True)
    with pytest.raises(RuntimeError, match="previous error during capture"):
        runner._capture()
    assert device_module._BROKEN_CAPTURE == [
        "RuntimeError: CUDA error: operation failed due to a previous error during capture"
    ]
    with pytest.raises(NotCapturable, match="an earlier capture failed in this process"):
        static(config, tiny_data).runner._capture()  # type: ignore[union-attr]


class ReplayingStandIn(StandInGraph):
    """A stand-in graph that replays by running the runner's static step (the CPU has no
    graphs); its ``capture_end`` fails on the process's ``fail_at``-th capture."""

    captures = 0
    fail_at = 0

    def capture_end(self) -> None:
        type(self).captures += 1
        self.events.append("end")
        if type(self).captures == self.fail_at:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    def replay(self) -> None:
        self.runner._static_step()

    def reset(self) -> None:
        self.events.append("reset")


class CapturesOnTheCpu(GraphedRunner):
    """The graphed runner with its capture taken on the CPU through the stand-in; the step
    the capture runs is undone, as a real capture (which runs nothing) leaves it."""

    def __init__(self, step: runners.TrainStep, *, capture: bool, stream: torch.cuda.Stream | None = None) -> None:
        super().__init__(step, capture=False, stream=stream)
        saved = self._snapshot()
        try:
            self._capture()
        finally:
            self._undo(saved)
        self.graph.runner = self  # type: ignore[union-attr]


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_failed_capture_stays_one_trials_problem(
    parallel: int, tmp_path: Path, tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The third capture's end fails (torch < 2.12 then leaves its generators and allocator
    mid-capture): that trial trains eagerly and says why, the graphs already live stop
    replaying and step eagerly from the same tensors, later trials are not captured, and
    every trial of the search finishes; no device fault is read into it."""
    import optuna

    from mnist_bench.search.loop import run_trials
    from mnist_bench.search.space import SearchSpace
    from mnist_bench.search.study import SearchSettings
    from mnist_bench.training import trainer

    monkeypatch.setattr(device_module, "_BROKEN_CAPTURE", [])
    monkeypatch.setattr(ReplayingStandIn, "captures", 0)
    monkeypatch.setattr(ReplayingStandIn, "fail_at", 3)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", ReplayingStandIn)
    monkeypatch.setattr(trainer, "GraphedRunner", CapturesOnTheCpu)
    space = SearchSpace(depth=(1, 1), width=(8, 32), optimizers=("sgd", "adamw"), batch_sizes=(32,), dropout=(0, 0.2))
    settings = SearchSettings(
        study="broken", storage=f"sqlite:///{tmp_path / 's.db'}", trials=6, epochs=3, seed=0, val_size=100,
        pruner="none", parallel=parallel, runtime=Runtime(static_on_cpu=True),
    )  # fmt: skip
    outcome = run_trials(settings, space, tiny_data)
    trials = outcome.study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 6
    reasons = {t.number: t.user_attrs.get("eager_reason") for t in trials}
    assert reasons[2] == "RuntimeError: CUDA error: operation not permitted when stream is capturing"
    later = [n for n in reasons if n > 2]
    assert all("an earlier capture failed in this process" in str(reasons[n]) for n in later)
    fallen = [n for n, r in reasons.items() if r and r.startswith("steps eager after")]
    assert fallen == ([] if parallel == 1 else [0, 1])  # in flight when it failed: they fell back
    assert all(reasons[n] is None for n in (0, 1) if n not in fallen)
    # Whatever ran graphed, eagerly or fell back in between, trained what its twin alone trains.
    for t in trials:
        alone = Training(trial_config_of(t, outcome.study), tiny_data)
        assert alone.run_to_end().train_loss == t.user_attrs["train_loss"]


def trial_config_of(trial: object, study: object) -> TrainConfig:
    from mnist_bench.search.loop import trial_config

    return trial_config(study, trial)  # type: ignore[arg-type]


def test_memory_is_given_back_only_when_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.2-2.7 assert in empty_cache after a failed capture: an allocator that refuses
    is contained and never asked again, and after a failed capture it is not asked at all."""
    import contextlib

    calls: list[str] = []

    def refuses() -> None:
        calls.append("empty_cache")
        raise RuntimeError("captures_underway.empty() INTERNAL ASSERT FAILED")

    monkeypatch.setattr(device_module, "_BROKEN_CAPTURE", [])
    monkeypatch.setattr(torch.cuda, "empty_cache", refuses)
    monkeypatch.setattr(torch.cuda, "device", lambda _: contextlib.nullcontext())
    cuda = torch.device("cuda", 0)
    device_module.give_back_memory(cuda)  # refused: contained, and remembered
    device_module.give_back_memory(cuda)
    assert calls == ["empty_cache"] and "INTERNAL ASSERT" in str(device_module.capture_broken())
    monkeypatch.setattr(device_module, "_BROKEN_CAPTURE", ["RuntimeError: capture failed"])
    calls.clear()
    device_module.give_back_memory(cuda)
    assert calls == []
    assert device_module.device_fault(RuntimeError("Offset increment outside graph capture")) is None


def test_a_saved_state_holds_the_device_counter_where_rates_live_on_the_device() -> None:
    """On CUDA a graph's replays move the device's step counter, never the host's (which the
    capture's one recorded step moved once): a state saved there must hold the device's
    count, or a resumed training starts its schedule over."""
    from mnist_bench.optimizers import Update
    from mnist_bench.schedules import rate_table
    from mnist_bench.training.step import Rates

    params = [torch.zeros(3, requires_grad=True)]
    rates_held = {"lr": torch.tensor(0.1), "momentum": torch.tensor(0.9)}  # as a CUDA update holds them
    update = Update(params, optimizer=None, rates=rates_held, buffers=[torch.zeros(3)])
    rates = Rates(rate_table("onecycle", 0.1, 20), update, torch.device("cpu"), cycles="momentum")
    rates.advance()  # the step a capture records: the host counts it once
    rates.step_no.fill_(7)  # seven replays later
    assert rates.state() == {"step": 7}
    rates.restore({"step": 7})
    assert rates.host_step == 7 and int(rates.step_no) == 7
    rates.advance()
    assert float(rates_held["lr"]) == pytest.approx(rate_table("onecycle", 0.1, 20).lr[7])  # type: ignore[union-attr]
