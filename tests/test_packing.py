"""How trials share a device: the automatic worker count and the stacked-model benchmark."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.measure.packing import (
    StackedMLP,
    packing_gain,
    process_throughput,
    stacked_optimizer,
    stacked_step,
    stacked_throughput,
)
from mnist_bench.model import ModelConfig
from mnist_bench.search import capacity
from mnist_bench.search.capacity import CUDA_CONTEXT_BYTES, MAX_AUTO_WORKERS, auto_workers, trial_bytes
from mnist_bench.search.space import SearchSpace
from mnist_bench.training.start import seeded_model

CPU = torch.device("cpu")
GIB = 2**30


def test_trial_bytes_grow_with_the_space() -> None:
    small = trial_bytes(SearchSpace(width=(32, 128), depth=(1, 2)), 55_000, 5_000)
    large = trial_bytes(SearchSpace(width=(32, 2048), depth=(1, 4)), 55_000, 5_000)
    data = 60_000 * (784 * 4 + 8)
    assert data < small < large
    assert large > 2 * 4 * 4 * 3 * 2048 * 2048  # three 2048x2048 layers, 4 tensors each, twice over
    shaped = trial_bytes(SearchSpace(shapes=("1000-500", "2500-2000")), 55_000, 5_000)
    assert shaped > 2 * 4 * 4 * 2500 * 2000  # sized by the biggest shape, not by width/depth


def test_auto_workers_bound_by_memory_cores_or_cap() -> None:
    space = SearchSpace()
    per_trial = trial_bytes(space, 55_000, 5_000)
    roomy = auto_workers(CPU, space, free_bytes=100 * GIB, cpu_count=64)
    assert roomy.workers == MAX_AUTO_WORKERS and f"at most {MAX_AUTO_WORKERS}" in roomy.reason
    assert auto_workers(CPU, space, free_bytes=100 * GIB, cpu_count=2).workers == 2
    tight = auto_workers(CPU, space, free_bytes=int(3.5 * per_trial / 0.8), cpu_count=64)
    assert tight.workers == 3 and "GiB free" in tight.reason
    assert auto_workers(CPU, space, free_bytes=1, cpu_count=64).workers == 1  # never zero


def test_free_ram_off_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without /proc/meminfo, physical memory from sysconf (macOS); without os.sysconf or its
    names (Windows), no memory bound at all, said in the reason, rather than a crash."""
    monkeypatch.setattr(capacity, "MEMINFO", str(tmp_path / "no-proc" / "meminfo"))
    assert capacity._available_ram() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    def unknown(name: str) -> int:
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(os, "sysconf", unknown)
    assert capacity._available_ram() is None
    monkeypatch.delattr(os, "sysconf")
    assert capacity._available_ram() is None
    plan = auto_workers(CPU, SearchSpace(), cpu_count=2)
    assert plan.workers == 2 and "2 CPU core(s)" in plan.reason and "free memory not measured" in plan.reason


def test_auto_workers_counts_the_cuda_context() -> None:
    space = SearchSpace()
    free = int(2 * (trial_bytes(space, 55_000, 5_000) + CUDA_CONTEXT_BYTES) / 0.8)
    plan = auto_workers(torch.device("cuda", 0), space, free_bytes=free, cpu_count=16)
    assert plan.workers == 2 and "cuda:0" in plan.reason


def test_stacked_models_train_exactly_like_separate_ones(tiny_data: DeviceData) -> None:
    """The stacked benchmark does the work of K separate trials, not something cheaper."""
    seeds = [3, 4, 5]
    shape = ModelConfig((32, 16))
    stacked = StackedMLP(shape, seeds)
    optimizer = stacked_optimizer(stacked, 1e-3, CPU)
    singles = [seeded_model(TrainConfig(shape, "adam", 1e-3, batch_size=16, epochs=1, seed=s), CPU) for s in seeds]
    single_optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in singles]
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        idx = torch.randint(tiny_data.x_train.shape[0], (len(seeds), 16), generator=generator)
        stacked_step(stacked, optimizer, tiny_data.x_train[idx], tiny_data.y_train[idx])
        for k, (model, opt) in enumerate(zip(singles, single_optimizers, strict=True)):
            opt.zero_grad()
            F.cross_entropy(model(tiny_data.x_train[idx[k]]), tiny_data.y_train[idx[k]]).backward()
            opt.step()
    x = tiny_data.x_eval[:32]
    together = stacked(x.expand(len(seeds), -1, -1))
    for k, model in enumerate(singles):
        torch.testing.assert_close(together[k], model(x), rtol=1e-4, atol=1e-5)


def test_stacked_mlp_refuses_dropout() -> None:
    with pytest.raises(ValueError, match="dropout"):
        StackedMLP(ModelConfig((16,), dropout=0.5), [0])


def test_packing_throughputs_are_measured(tiny_data: DeviceData) -> None:
    timing = {"steps": 5, "repeats": 2, "warmup": 2}
    rows = [
        {"trials": k, "method": method, **measure("784-32-10", 16, k, tiny_data, **timing)}
        for k in (1, 2)
        for method, measure in (("processes", process_throughput), ("stacked", stacked_throughput))
    ]
    packing_gain(rows)
    assert all(row["samples_per_s"] > 0 for row in rows)
    assert [row["vs_one_trial"] for row in rows if row["trials"] == 1] == [1.0, 1.0]
