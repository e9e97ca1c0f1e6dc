"""The self-check's mechanism on the CPU: the static step stands in for the graph and lanes
run on threads, in a real child process, with the faults it must survive injected."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from mnist_bench.config import Runtime
from mnist_bench.measure import doctor, selfcheck
from mnist_bench.measure.doctor import Check
from mnist_bench.measure.selfcheck import INJECT_ENV, Verdict

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only its type is read: what a command on a GPU would ask


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(INJECT_ENV, raising=False)
    return tmp_path / "cache"


def verdict(graphed: bool, in_flight: bool) -> Verdict:
    return Verdict(graphed, in_flight, None if graphed and in_flight else "stand-in", selfcheck.machine_key(CPU), 0.0)


def test_a_passing_check_is_kept_and_not_run_again(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """Its child prints its verdict, then exits 3 (as one whose CUDA teardown fails): a verdict
    printed is taken as printed, not recorded as a death."""
    monkeypatch.setenv(INJECT_ENV, "exit-after")
    said: list[str] = []
    first, fresh = selfcheck.verdict_for(CPU, say=said.append)
    assert fresh and first.ok and first.reason is None and first.machine == selfcheck.machine_key(CPU)
    assert len(said) == 1 and said[0].startswith("checking the fast paths on ")  # before the pause, not after
    assert list(cache.glob("selfcheck-*.json")) == [selfcheck.verdict_path(first.machine)]

    def no_second_run(*_: object, **__: object) -> Verdict:
        raise AssertionError("the kept verdict was not used")

    monkeypatch.setattr(selfcheck, "run_check", no_second_run)
    assert selfcheck.verdict_for(CPU, say=said.append) == (first, False) and len(said) == 1
    # Another version (or driver, or GPU) is another machine: its own check.
    assert selfcheck.load_verdict({**first.machine, "torch": "0.0.0"}) is None


def test_a_check_that_fails_turns_off_only_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INJECT_ENV, "graphed")
    found = selfcheck.run_check(CPU)
    assert not found.graphed and found.in_flight  # trainings in flight, eagerly, still equal alone
    assert found.reason is not None and "static step = eager" in found.reason
    lines: list[str] = []
    runtime, parallel = selfcheck.trusted(CUDA, Runtime(), 4, say=lines.append, check=lambda d: (found, True))
    assert not runtime.graphs and parallel == 4 and runtime.side_by_side
    assert len(lines) == 1 and "self-check failed" in lines[0] and "without graphed steps" in lines[0]
    assert "mnist-bench doctor" in lines[0]


def test_trainings_in_flight_that_differ_from_alone_fail_the_check() -> None:
    data = doctor.synthetic_data(CPU, n_train=200, n_eval=50)
    assert doctor.check_in_flight(data).ok
    assert doctor.check_in_flight(data, perturb=True).ok is False
    lines: list[str] = []
    runtime, parallel = selfcheck.trusted(
        CUDA, Runtime(), 4, say=lines.append, check=lambda d: (verdict(True, False), False)
    )
    assert runtime.graphs and parallel == 1 and not runtime.side_by_side
    assert lines == [lines[0]] and "without trainings in flight" in lines[0]


# The child dies only once it has imported the package (seconds on a busy machine): its
# limit leaves that time, so only the hanging child can be the one that runs out of it.
@pytest.mark.parametrize(
    ("inject", "timeout_s", "said"), [("die", 120, "died (exit -9"), ("hang", 3, "did not finish in 3 s")]
)
def test_a_child_that_dies_or_hangs_turns_both_paths_off(
    monkeypatch: pytest.MonkeyPatch, inject: str, timeout_s: float, said: str
) -> None:
    monkeypatch.setenv(INJECT_ENV, inject)
    found = selfcheck.run_check(CPU, timeout_s=timeout_s)
    assert not found.graphed and not found.in_flight and found.reason is not None and said in found.reason
    assert not found.conclusive  # kept a day, then checked again: the trouble may have passed
    selfcheck.save_verdict(found)
    assert selfcheck.load_verdict(found.machine) == found
    selfcheck.save_verdict(replace(found, checked_s=found.checked_s - 2 * selfcheck.INCONCLUSIVE_KEEP_S))
    assert selfcheck.load_verdict(found.machine) is None
    runtime, parallel = selfcheck.trusted(CUDA, Runtime(), 8, check=lambda d: (found, True))
    assert not runtime.graphs and parallel == 1 and not runtime.side_by_side


def test_the_self_check_builds_every_training_as_production_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every training the self-check compares is built as a search's trials and a retrain's
    seeds are: in two phases on a lane (``lanes.Build``), its host start (initial weights,
    rate table) drawn before the exclusive build that makes its device part, never inside it."""
    import threading

    import mnist_bench.training.lanes as lanes_module
    import mnist_bench.training.start as start_module
    from mnist_bench.training.trainer import Training

    small = doctor.synthetic_data(CPU, n_train=200, n_eval=50)  # doctor's own kinds of step, on less data
    monkeypatch.setattr(doctor, "synthetic_data", lambda device: small)
    monkeypatch.setattr(doctor, "trainable_precisions", lambda device: ["fp32"])
    monkeypatch.setattr(doctor, "CHECK_CONFIGS", doctor.CONFIGS)
    building = threading.local()  # set on a lane's thread while it runs an exclusive build
    hosts: list[bool] = []  # per training built: from a host start drawn before its build
    drawn_inside: list[bool] = []  # per initial weights drawn: inside an exclusive build
    real_build, real_weights, real_init = lanes_module._build, start_module.initial_weights, Training.__init__

    def build(slot: Any, lane: Any) -> None:
        building.on = True
        try:
            real_build(slot, lane)
        finally:
            building.on = False

    def weights(config: Any) -> torch.nn.Module:
        drawn_inside.append(getattr(building, "on", False))
        return real_weights(config)

    def init(self: Training, config: Any, data: Any, **kw: Any) -> None:
        hosts.append(kw.get("host") is not None)
        real_init(self, config, data, **kw)

    monkeypatch.setattr(lanes_module, "_build", build)
    monkeypatch.setattr(start_module, "initial_weights", weights)
    monkeypatch.setattr(Training, "__init__", init)
    found = selfcheck.check_here(CPU)
    assert found.ok, found.reason
    # Graphed against eager (4 + 4), a resume (whole, first epoch, resumed), in flight against alone (4 + 4).
    assert hosts == [True] * 19
    assert drawn_inside == [False] * 19


def test_steps_override_the_verdict_and_the_cpu_needs_none() -> None:
    def never(_device: torch.device) -> tuple[Verdict, bool]:
        raise AssertionError("no check was needed")

    assert selfcheck.trusted(CUDA, Runtime(), 4, steps="graphed", check=never) == (Runtime(), 4)
    assert selfcheck.trusted(CUDA, Runtime(), 4, steps="eager", check=never) == (Runtime(graphs=False), 4)
    assert selfcheck.trusted(CPU, Runtime(), 4, check=never) == (Runtime(), 4)
    assert selfcheck.trusted(CUDA, Runtime(), 4, check=lambda d: (verdict(True, True), False)) == (Runtime(), 4)
    with pytest.raises(ValueError, match="steps='fast'"):
        selfcheck.trusted(CUDA, Runtime(), 1, steps="fast", check=never)


def test_doctor_keeps_its_findings_as_the_verdict() -> None:
    checks = [
        Check("static step = eager: Adam", "equal bitwise", True),
        Check("4 trainings in flight = each alone", "Adam: differ", False),
        Check("memory, 40 trainings 8 in flight", "+0 MB", True),
    ]
    selfcheck.save_verdict(selfcheck.verdict_from_checks(CPU, checks))
    found = selfcheck.load_verdict(selfcheck.machine_key(CPU))
    assert found is not None and found.graphed and not found.in_flight
    assert found.reason == "4 trainings in flight = each alone: Adam: differ"
    assert replace(found, checked_s=0.0) == Verdict(True, False, found.reason, selfcheck.machine_key(CPU), 0.0)


def test_the_key_holds_the_sources_the_settings_and_cublas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout whose step changed is checked again, whatever the version string says; so is
    a process whose allocator or cuBLAS settings differ."""
    import shutil

    copy = tmp_path / "mnist_bench"
    shutil.copytree(selfcheck.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = selfcheck.sources_digest(copy)
    assert before == selfcheck.sources_digest(copy) == selfcheck.sources_digest()
    step = copy / "training" / "step.py"
    step.write_text(step.read_text() + "\n# a change\n")
    assert selfcheck.sources_digest(copy) != before
    key = selfcheck.machine_key(CPU)
    assert {"sources", "settings", "cublas", "torch", "driver"} <= set(key)
    for name in selfcheck.CUDA_SETTINGS:
        monkeypatch.setenv(name, "1")
        assert selfcheck.machine_key(CPU) != key, name
        monkeypatch.delenv(name)
    assert selfcheck.machine_key(CPU) == key


def test_a_verdict_of_other_code_is_not_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that computed another key (another copy of the package, other settings) speaks
    for that, not for this process: both paths off, inconclusive, and why."""
    monkeypatch.setattr(selfcheck, "sources_digest", lambda root=None: "parent-sources")
    monkeypatch.setenv(INJECT_ENV, "hang")  # never reached: the child is a stand-in below

    class Child:
        def __init__(self, *_: object, stdout: object, **__: object) -> None:
            other = {**selfcheck.machine_key(CPU), "sources": "child-sources"}
            stdout.write(Verdict(True, True, None, other, 0.0).to_json() + "\n")  # type: ignore[attr-defined]

        def wait(self, timeout: float) -> int:
            return 0

    monkeypatch.setattr(selfcheck.subprocess, "Popen", Child)
    found = selfcheck.run_check(CPU)
    assert not found.graphed and not found.in_flight and not found.conclusive
    assert found.reason is not None and "sources: parent-sources here, child-sources there" in found.reason
