from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnist_bench.cli import app
from mnist_bench.config import Runtime
from mnist_bench.data import DeviceData, load_split
from mnist_bench.errors import MnistBenchError
from mnist_bench.measure.bench import (
    classic_throughput,
    floor_row,
    train_bytes_per_step,
    train_flops_per_sample,
    trainer_throughput,
)
from mnist_bench.measure.suite import BenchSettings, run_bench, write_results
from mnist_bench.training.timing import adam_config as adam
from mnist_bench.training.timing import timed

CPU = torch.device("cpu")


def test_timed_runs_warmup_then_repeats() -> None:
    calls: list[int] = []
    timing = timed(lambda: calls.append(1), CPU, warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing.seconds) == 3
    rate = timing.rate(10)
    assert rate["min"] <= rate["median"] <= rate["max"]


def test_trainer_and_classic_throughput_report_positive_rates(tiny_mnist: Path, tiny_data: DeviceData) -> None:
    ours = trainer_throughput(adam("784-32-10", 32), tiny_data, Runtime(), steps=5, repeats=2, warmup=2)
    assert ours["samples_per_s"] > 0 and ours["epoch_s"] > 0 and ours["peak_mem_mb"] is None
    classic = classic_throughput(adam("784-32-10", 32), load_split(tiny_mnist, "train", verify=False), CPU,
                                 steps=5, repeats=2, warmup=2)  # fmt: skip
    assert classic["samples_per_s"] > 0


def test_floor_arithmetic() -> None:
    assert train_flops_per_sample("784-128-10") == 6 * (784 * 128 + 128 * 10)
    weights = 784 * 128 + 128 + 128 * 10 + 10
    assert train_bytes_per_step("784-128-10", 100) == 4 * (10 * weights + 4 * 100 * 138 + 2 * 100 * 784)
    # Compute-bound: the FLOPs at the rate; memory-bound: the bytes at the bandwidth.
    compute = floor_row("784-128-10", 100, 6 * (784 * 128 + 128 * 10) * 100 / 0.01, 1e18)
    assert compute["floor_step_ms"] == pytest.approx(10) and compute["bound"] == "compute"
    memory = floor_row("784-128-10", 1, 1e18, train_bytes_per_step("784-128-10", 1) / 0.002)
    assert memory["floor_step_ms"] == pytest.approx(2) and memory["bound"] == "memory"


@pytest.mark.parametrize(
    "changes, message",
    [({"networks": ("784-x-10",)}, "network '784-x-10'"), ({"batch_sizes": (0,)}, "batch size 0")],
)
def test_bad_bench_settings(changes: dict[str, object], message: str) -> None:
    with pytest.raises(MnistBenchError, match=message):
        BenchSettings(**changes)  # type: ignore[arg-type]


def test_quick_suite_writes_tables_json_and_plot(tmp_path: Path, tiny_mnist: Path) -> None:
    # Every section, on two small nets: what the sections measure, not how long big nets take.
    settings = replace(BenchSettings.quick(), networks=("784-128-10", "784-64-32-10"), search_parallel=(2,),
                       workers=(1,), reference=True)  # fmt: skip
    split = load_split(tiny_mnist, "train", verify=False)
    results = run_bench(
        settings,
        split,
        CPU,
        search_runner=lambda n, k: {
            "trials": 1,
            "wall_s": 1.0 * n,
            "trials_per_min": 60.0 / n,
            "aggregate_samples_per_s": 1.0,
        },
        reference_runner=lambda: {"trials": 1, "wall_s": 4.0, "trials_per_min": 15.0},
    )
    assert set(results) == {"floor", "training", "inflight", "classic", "runtime", "inference", "packing", "search"}
    inflight = results["inflight"]
    assert list(inflight["trials"]) == [1, 2] and (inflight["samples_per_s"] > 0).all()
    assert results["floor"]["copy_gb_per_s"].iloc[0] > 0 and set(results["training"]["step"]) == {"eager"}
    search = results["search"]
    assert list(search["parallel"]) == [1, 2, 1] and search["method"].iloc[-1] == "hand-written Optuna example"
    assert search["vs_hand_written"].iloc[0] == pytest.approx(4.0)
    packing = results["packing"]
    assert set(packing["method"]) == {"processes", "stacked"} and (packing["samples_per_s"] > 0).all()
    assert len(results["training"]) == len(settings.networks) * len(settings.batch_sizes)
    assert (results["classic"]["speedup"] > 0).all()
    assert set(results["runtime"]["runtime"]) == {"eager fp32", "eager bf16"}
    assert results["training"]["env_device"].iloc[0] == "cpu"
    paths = write_results(results, tmp_path, settings)
    names = {p.name for p in paths}
    assert {"training.csv", "training.md", "classic.csv", "bench.json", "throughput.png"} <= names
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["settings"]["steps"] == settings.steps and saved["results"]["floor"][0]["matmul_tflops"] > 0


runner = CliRunner()


def test_bench_cli_quick_on_tiny_data(tmp_path: Path, tiny_mnist: Path) -> None:
    args = ["bench", "--quick", "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--section", "training", "--section", "classic", "-n", "784-64-10"])
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.stdout and (tmp_path / "throughput.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", "784-abc-10"], "network '784-abc-10'"),
        (["-b", "0"], "batch size 0"),
        (["--precision", "tf32"], "--precision tf32"),
        (["--section", "nonsense"], "unknown section"),
        (["--search-trials", "0"], "--search-trials 0"),
        (["--worker-counts", "0"], "workers must be at least 1"),
    ],
)
def test_bench_bad_input(tmp_path: Path, tiny_mnist: Path, args: list[str], message: str) -> None:
    base = ["bench", "--quick", "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu", "--out", str(tmp_path)]
    result = runner.invoke(app, [*base, *args])
    # tf32 is a valid precision this machine cannot run (no CUDA): not a usage error.
    usage = args[0] != "--precision"
    assert result.exit_code == (2 if usage else 1) and message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_bench_search_section_on_real_digits(tmp_path: Path, real_mnist_subset: Path) -> None:
    """Real studies (worker processes, a 5,000-image validation split): 12,000 real digits suffice."""
    args = ["bench", "--quick", "--data-dir", str(real_mnist_subset), "--no-verify", "--device", "cpu",
            "--out", str(tmp_path), "--section", "search"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} >= {"search.csv", "bench.json"}
