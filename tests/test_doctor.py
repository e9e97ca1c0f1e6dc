"""doctor: the comparisons it rests on, and its command's exit codes. CI runs the whole
command on the CPU (.ci/run); these stay short."""

from __future__ import annotations

import builtins
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from mnist_bench.cli import app
from mnist_bench.config import Runtime
from mnist_bench.measure import doctor, selfcheck
from mnist_bench.measure.doctor import CONFIGS, Check, compare, synthetic_data
from mnist_bench.training.device import cpu_model, select_device
from mnist_bench.training.trainer import Training

CPU = torch.device("cpu")
runner = CliRunner()


def test_compare_tells_bitwise_close_and_apart() -> None:
    data = synthetic_data(CPU, n_train=200, n_eval=50)
    config = replace(CONFIGS["Adam"], epochs=1)
    a = Training(config, data).run_to_end()
    assert compare(a, Training(config, data).run_to_end(), bitwise=True) == (True, "equal bitwise")
    nudged = Training(config, data).run_to_end()
    with torch.no_grad():
        next(nudged.model.parameters())[0, 0] += 1e-7
    ok, found = compare(a, nudged, bitwise=False)
    assert ok and found.startswith("largest difference ") and "within" in found
    assert not compare(a, nudged, bitwise=True)[0]
    other = Training(replace(config, seed=9), data).run_to_end()
    assert not compare(a, other, bitwise=False)[0]


def test_the_static_step_stands_in_on_the_cpu() -> None:
    data = synthetic_data(CPU, n_train=200, n_eval=50)
    fast = Training(replace(CONFIGS["Adam"], epochs=1), data, runtime=doctor.fast_runtime(CPU))
    assert fast.graphed and fast.runner is not None and fast.runner.graph is None  # type: ignore[union-attr]
    assert Training(CONFIGS["Adam"], data, runtime=Runtime(graphs=True)).graphed is False  # not by default


def test_a_check_that_raises_is_a_failed_check_and_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(tmp_path))

    def broken(*_: object) -> list[Check]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")

    monkeypatch.setattr(doctor, "check_graphed_against_eager", broken)
    monkeypatch.setattr(doctor, "check_in_flight", lambda data: Check("in flight", "equal bitwise", True))
    monkeypatch.setattr(doctor, "check_resume", lambda data, steps: Check("resume", "equal bitwise", True))
    monkeypatch.setattr(doctor, "check_speed", lambda data, steps: [Check("steps/s", "1,000", None)])
    monkeypatch.setattr(doctor, "check_memory", lambda data: Check("memory", "+0 MB", True))
    monkeypatch.setattr(doctor, "check_precision", lambda device: [Check("against fp32", "bf16 0.70x", None)])
    result = runner.invoke(app, ["doctor", "--device", "cpu"], terminal_width=200)
    assert result.exit_code == 1
    assert "raised RuntimeError: CUDA error: an illegal memory access was encountered" in result.stdout
    assert result.stderr.startswith("Error: 1 check(s) failed: graphed against eager")
    assert result.stderr.count("\n") == 1
    assert torch.__version__ in result.stdout
    # What doctor found is kept as the machine's self-check verdict: graphed steps off.
    assert "Self-check verdict for this machine and code: fast paths off" in result.stdout
    kept = selfcheck.load_verdict(selfcheck.machine_key(CPU))
    assert kept is not None and not kept.graphed and kept.in_flight


def hide_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every open() of a /proc path fails, as on a system without /proc."""
    real_open = builtins.open

    def no_proc(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).startswith("/proc"):
            raise FileNotFoundError(2, "No such file or directory", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)


def test_memory_check_off_linux_reads_the_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc (macOS, the BSDs) the memory check reads getrusage's peak instead, and
    passes on a process whose memory does not pile up."""
    hide_proc(monkeypatch)
    check = doctor.check_memory(synthetic_data(CPU, n_train=200, n_eval=50))
    assert check.ok is True and check.result.startswith("peak resident "), check
    _, what = doctor.used_memory(CPU) or (0.0, "")
    assert what == "peak resident"


def test_doctor_passes_where_no_memory_can_be_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither /proc nor the resource module (Windows): the memory check says "not measured"
    and doctor still exits 0, where it once failed reading /proc/self/statm."""
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(tmp_path))
    hide_proc(monkeypatch)
    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` raises ImportError, as on Windows
    assert doctor.peak_resident_bytes() is None and doctor.used_memory(CPU) is None
    monkeypatch.setattr(doctor, "check_graphed_against_eager", lambda data, steps: [Check("graphed", "equal", True)])
    monkeypatch.setattr(doctor, "check_in_flight", lambda data: Check("in flight", "equal bitwise", True))
    monkeypatch.setattr(doctor, "check_resume", lambda data, steps: Check("resume", "equal bitwise", True))
    monkeypatch.setattr(doctor, "check_speed", lambda data, steps: [Check("steps/s", "1,000", None)])
    monkeypatch.setattr(doctor, "check_precision", lambda device: [Check("against fp32", "bf16 0.70x", None)])
    result = runner.invoke(app, ["doctor", "--device", "cpu"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "not measured: this system reports no memory of a process" in result.stdout
    assert "All checks passed" in result.stdout


def test_precision_names_the_fastest_of_the_rates_it_measured() -> None:
    *rates, verdict = doctor.check_precision(CPU)
    measured = {check.name.split(", ")[1]: float(check.result.replace(",", "")) for check in rates}
    assert set(measured) == {"fp32", "bf16"}  # tf32 is CUDA's alone
    assert all(rate > 0 for rate in measured.values())
    fastest = max(measured, key=lambda precision: measured[precision])
    assert verdict.result.startswith("bf16 ") and verdict.result.endswith(f"--precision {fastest} is fastest here")


def test_cpu_model_reads_linux_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n\n")
    assert cpu_model(str(cpuinfo)) == "AMD EPYC 9R14 96-Core Processor"
    cpuinfo.write_text("processor\t: 0\nmodel name\t:\n")
    assert cpu_model(str(cpuinfo)) is None
    assert cpu_model(str(tmp_path / "missing")) is None  # not Linux


def test_select_device_on_a_cpu_does_nothing() -> None:
    assert select_device(CPU) == CPU


@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA GPU")
def test_select_device_makes_it_current_on_cuda() -> None:
    last = torch.device("cuda", torch.cuda.device_count() - 1)
    before = torch.cuda.current_device()
    try:
        select_device(last)
        assert torch.cuda.current_device() == last.index
    finally:
        torch.cuda.set_device(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_doctor_passes_on_cuda() -> None:
    report = doctor.run_doctor(torch.device("cuda"))
    assert report.ok, [c for c in report.checks if c.ok is False]


def test_graphed_against_eager_covers_every_precision_split_k_and_an_exact_batch() -> None:
    """What the self-check trains: each precision the device trains in, the split-K net and
    a batch that divides the data, every one bitwise equal to its eager twin."""
    data = doctor.synthetic_data(torch.device("cpu"), n_train=300, n_eval=10)
    checks = doctor.check_graphed_against_eager(data, "static step")
    precisions = doctor.trainable_precisions(data.device)
    assert precisions == ["fp32", "bf16"]  # tf32 is CUDA's
    assert [c.name for c in checks] == [
        f"static step = eager, {p}: {name}" for p in precisions for name in doctor.CHECK_CONFIGS
    ]
    assert any("split-K: 784-2048-2048-10" in name for name in doctor.CHECK_CONFIGS)
    assert all(c.ok and c.result == "equal bitwise" for c in checks), checks


def test_auto_resolves_to_an_indexed_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda.set_device refuses a CUDA device without an index: doctor's default
    (--device auto) selected one and crashed on every GPU."""
    from mnist_bench.training.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
