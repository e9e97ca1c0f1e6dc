"""What `mnist-bench bench` runs, and the files it writes.

Sections, each a DataFrame:
- floor: the device's measured matmul rate and copy bandwidth (the hardware's floor);
- training: samples/s and epoch time of the trainer for each network and batch size,
  beside the floor those imply (FLOPs at the matmul rate, bytes at the bandwidth); on
  CUDA both as graphed steps (the default) and eager ones;
- inflight: K trials of one small net side by side in one process (``search --parallel``),
  aggregate and per-trial samples/s;
- classic: the tutorial DataLoader pipeline against the trainer, same network and batch;
- runtime: eager vs compiled, fp32 vs tf32 vs bf16, where the device has them;
- inference: one-image latency (median, p99) and large-batch throughput;
- packing: K same-shaped trials at once on the device, as K processes and as one
  stacked model, against one trial at a time (how trials share a device, chosen by it);
- search: trials per minute and aggregate samples/s of a fresh default-space study with
  1, 2, 4, 8 worker processes and with K trials side by side in one process, beside the
  hand-written pattern users write instead (Optuna's PyTorch example: torchvision-style
  per-sample transforms, a DataLoader, report and prune per epoch), run the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mnist_bench.config import PRECISIONS, Runtime
from mnist_bench.data import DeviceData, MnistSplit, ensure_split
from mnist_bench.errors import UsageError
from mnist_bench.measure.bench import (
    BATCH_SIZES,
    NETWORKS,
    classic_throughput,
    copy_bandwidth,
    environment_row,
    floor_row,
    inference,
    inflight_throughput,
    matmul_flops,
    train_flops_per_sample,
    trainer_throughput,
)
from mnist_bench.measure.packing import packing_gain, process_throughput, stacked_throughput
from mnist_bench.measure.reference import hand_written_search, search_throughput
from mnist_bench.model import ModelConfig
from mnist_bench.search.leaderboard import to_markdown
from mnist_bench.training.timing import adam_config

SECTIONS = ("floor", "training", "inflight", "classic", "runtime", "inference", "packing", "search")


@dataclass(frozen=True)
class BenchSettings:
    networks: tuple[str, ...] = NETWORKS  # architectures, '784-...-10'
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    steps: int = 100  # most optimizer steps per timed repeat (fewer for big batches)
    samples_per_repeat: int = 16384  # aim of each repeat; at least 10 steps whatever the batch
    repeats: int = 5  # timed repeats; figures are their median (with min and max)
    warmup: int = 20  # untimed steps before timing
    classic_networks: tuple[str, ...] = ("784-128-10",)
    classic_batch_sizes: tuple[int, ...] = (64,)
    precisions: tuple[str, ...] = tuple(PRECISIONS)  # those the device lacks are skipped and said so
    compile: bool = True  # include torch.compile rows in the runtime section
    # On CUDA, steps replayed as graphs (and eager ones beside them); off where the machine's
    # self-check did not trust graphed steps (bench --steps).
    graphs: bool = True
    # (network, batch) pairs of the runtime section: a launch-bound and a compute-bound one.
    runtime_cases: tuple[tuple[str, int], ...] = (("784-128-10", 64), ("784-1024-1024-10", 512))
    workers: tuple[int, ...] = (1, 2, 4, 8)  # concurrent trials on the device (packing, search)
    inflight: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # trials side by side in one process
    packing_network: str = "784-128-10"  # the tutorial net: small trials are what packing is for
    packing_batch_size: int = 64
    search_trials: int = 8  # trials per search-throughput run (docs/gpu.md's aim is for 50 trials of at most 10 epochs)
    search_epochs: int = 2
    search_parallel: tuple[int, ...] = (2, 4, 8, 16)  # K of `search --parallel K` rows (one process)
    reference: bool = True  # time the hand-written Optuna-example pattern too (minutes on a CPU)
    matmul_size: int = 4096

    def __post_init__(self) -> None:
        for spec in (*self.networks, *self.classic_networks, self.packing_network):
            try:
                ModelConfig.parse(spec)
            except ValueError as exc:
                raise UsageError(f"network {spec!r}: {exc}") from None
        for bs in (*self.batch_sizes, *self.classic_batch_sizes, self.packing_batch_size):
            if bs < 1:
                raise UsageError(f"batch size {bs}: must be at least 1")
        if min(self.steps, self.repeats) < 1 or min((*self.workers, *self.inflight), default=1) < 1:
            raise UsageError("steps, repeats and workers must be at least 1")
        for name in ("search_trials", "search_epochs"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")

    def given(self, **options: Any) -> BenchSettings:
        """These settings with the options a user gave (None or empty: not given); lists become tuples."""
        chosen: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v not in (None, [], ())
        }
        return replace(self, **chosen)

    @classmethod
    def quick(cls) -> BenchSettings:
        """A run a CI machine affords: every section, few points, short repeats."""
        return cls(
            batch_sizes=(64, 1024),
            steps=20,
            samples_per_repeat=2048,
            repeats=3,
            warmup=5,
            precisions=("fp32", "bf16"),
            compile=False,
            runtime_cases=(("784-128-10", 64),),  # bf16 on a CPU takes a minute for the wide net
            workers=(1, 2),
            inflight=(1, 2),
            search_trials=2,
            search_epochs=1,
            search_parallel=(),
            reference=False,
            matmul_size=1024,
        )


Log = Callable[[str], None]


def _floor(device: torch.device, settings: BenchSettings) -> dict[str, float]:
    flops = matmul_flops(device, size=settings.matmul_size, repeats=settings.repeats)
    bandwidth = copy_bandwidth(device, megabytes=256 if device.type == "cuda" else 64, repeats=settings.repeats)
    return {"matmul_tflops": flops / 1e12, "copy_gb_per_s": bandwidth / 1e9}


@dataclass(frozen=True)
class _Run:
    """What every section reads: the settings, the data on the device, the floor, the environment."""

    settings: BenchSettings
    split: MnistSplit
    data: DeviceData
    device: torch.device
    env: dict[str, Any]
    flops: float  # measured matmul FLOP/s
    bandwidth: float  # measured copy bytes/s
    log: Log
    search_runner: Callable[[int, int], dict[str, Any]] | None
    reference_runner: Callable[[], dict[str, Any]] | None

    def kw(self, batch_size: int) -> dict[str, int]:
        """Timing options for one batch size: big batches take fewer steps per repeat."""
        s = self.settings
        return {"steps": max(10, min(s.steps, s.samples_per_repeat // batch_size)), "repeats": s.repeats,
                "warmup": s.warmup}  # fmt: skip


def _training(run: _Run) -> pd.DataFrame:
    """The trainer per network and batch size, beside its floor; on CUDA graphed and eager."""
    rows = []
    graphed = run.device.type == "cuda" and run.settings.graphs
    step_kinds = (True, False) if graphed else (False,)  # the eager rows: what graphs buy
    for layers in run.settings.networks:
        for bs in run.settings.batch_sizes:
            bound = floor_row(layers, bs, run.flops, run.bandwidth)
            for graphs in step_kinds:
                run.log(f"training: {layers} batch {bs}{' graphed' if graphs else ''}")
                measured = trainer_throughput(adam_config(layers, bs), run.data, Runtime(graphs=graphs), **run.kw(bs))
                of_floor = measured["samples_per_s"] / bound["floor_samples_per_s"]
                rows.append({"network": layers, "batch_size": bs, **measured, **bound, "of_floor": of_floor,
                             "train_flops_per_sample": train_flops_per_sample(layers), **run.env})  # fmt: skip
    return pd.DataFrame(rows)


def _inflight(run: _Run) -> pd.DataFrame:
    """K trainings of the small net side by side in one process, against one."""
    rows = []
    layers, bs = run.settings.packing_network, run.settings.packing_batch_size
    for k in run.settings.inflight:
        run.log(f"inflight: {k} x {layers} batch {bs} side by side")
        runtime = Runtime(graphs=run.settings.graphs)
        measured = inflight_throughput(layers, bs, k, run.data, runtime=runtime, **run.kw(bs))
        rows.append({"network": layers, "batch_size": bs, "trials": k, **measured, **run.env})
    one = rows[0]["samples_per_s"] if rows and rows[0]["trials"] == 1 else None
    for row in rows:
        row["vs_one_trial"] = row["samples_per_s"] / one if one else float("nan")
    return pd.DataFrame(rows)


def _classic(run: _Run) -> pd.DataFrame:
    """The tutorial DataLoader pipeline against the trainer, same network and batch."""
    rows = []
    for layers in run.settings.classic_networks:
        for bs in run.settings.classic_batch_sizes:
            run.log(f"classic: {layers} batch {bs}, DataLoader pipeline vs trainer")
            config = adam_config(layers, bs)
            classic = classic_throughput(config, run.split, run.device, **run.kw(bs))
            ours = trainer_throughput(config, run.data, Runtime(graphs=run.settings.graphs), **run.kw(bs))
            rows.append({"network": layers, "batch_size": bs, "classic_samples_per_s": classic["samples_per_s"],
                         "trainer_samples_per_s": ours["samples_per_s"],
                         "speedup": ours["samples_per_s"] / classic["samples_per_s"],
                         "classic_epoch_s": classic["epoch_s"], "trainer_epoch_s": ours["epoch_s"],
                         **run.env})  # fmt: skip
    return pd.DataFrame(rows)


def _runtime(run: _Run) -> pd.DataFrame:
    """Eager against compiled, in each precision the device has."""
    rows = []
    for layers, bs in run.settings.runtime_cases:
        base = None
        for compile_ in (False, True) if run.settings.compile else (False,):
            for precision in run.settings.precisions:
                runtime = Runtime(precision=precision, compile=compile_, graphs=run.settings.graphs)
                label = f"{'compiled' if compile_ else 'eager'} {precision}"
                row = {"network": layers, "batch_size": bs, "runtime": label}
                try:
                    runtime.check(run.device)
                except ValueError as exc:
                    rows.append({**row, "skipped": str(exc), **run.env})
                    continue
                run.log(f"runtime: {layers} batch {bs}, {label}")
                measured = trainer_throughput(adam_config(layers, bs), run.data, runtime, **run.kw(bs))
                base = base or measured["samples_per_s"]
                vs = measured["samples_per_s"] / base
                rows.append({**row, **measured, "vs_eager_fp32": vs, "skipped": "", **run.env})
    return pd.DataFrame(rows)


def _inference(run: _Run) -> pd.DataFrame:
    """One-image latency and large-batch throughput per network."""
    rows = []
    for layers in run.settings.networks:
        run.log(f"inference: {layers}")
        measured = inference(layers, run.device, batch=8192, iterations=50 * run.settings.repeats, warmup=20)
        rows.append({"network": layers, **measured, **run.env})
    return pd.DataFrame(rows)


def _packing(run: _Run) -> pd.DataFrame:
    """K same-shaped trials at once, as processes and as one stacked model."""
    rows = []
    layers, bs = run.settings.packing_network, run.settings.packing_batch_size
    for k in run.settings.workers:
        for method, measure in (("processes", process_throughput), ("stacked", stacked_throughput)):
            run.log(f"packing: {k} x {layers} batch {bs} as {method}")
            measured = measure(layers, bs, k, run.data, **run.kw(bs))
            rows.append({"network": layers, "batch_size": bs, "trials": k, "method": method, **measured, **run.env})
    packing_gain(rows)
    return pd.DataFrame(rows)


def _search(run: _Run) -> pd.DataFrame | None:
    """Fresh studies with W workers or K in flight, beside the hand-written pattern."""
    if run.search_runner is None:
        return None
    settings = run.settings
    rows: list[dict[str, Any]] = []
    plans = [(w, 1) for w in settings.workers] + [(1, k) for k in settings.search_parallel if k > 1]
    for workers, parallel in plans:
        run.log(f"search: {workers} worker(s), {parallel} side by side, {settings.search_trials} trials")
        plan = {"method": "mnist-bench search", "workers": workers, "parallel": parallel}
        rows.append({**plan, **run.search_runner(workers, parallel), **run.env})
    with_reference = run.reference_runner is not None and settings.reference
    if with_reference:
        assert run.reference_runner is not None
        run.log(f"search: the hand-written Optuna-example pattern, {settings.search_trials} trials")
        rows.append({"method": "hand-written Optuna example", "workers": 1, "parallel": 1,
                     **run.reference_runner(), **run.env})  # fmt: skip
    base = rows[0]["trials_per_min"] if rows else 1.0
    reference = rows[-1]["trials_per_min"] if with_reference else None
    for row in rows:
        row["speedup"] = row["trials_per_min"] / base
        row["vs_hand_written"] = row["trials_per_min"] / reference if reference else float("nan")
    return pd.DataFrame(rows)


# Each section after the floor, in SECTIONS' order: one function of the run, a DataFrame (None: skipped).
_SECTION_RUNS: dict[str, Callable[[_Run], pd.DataFrame | None]] = {
    "training": _training,
    "inflight": _inflight,
    "classic": _classic,
    "runtime": _runtime,
    "inference": _inference,
    "packing": _packing,
    "search": _search,
}


def run_bench(
    settings: BenchSettings,
    split: MnistSplit,
    device: torch.device,
    *,
    sections: tuple[str, ...] = SECTIONS,
    search_runner: Callable[[int, int], dict[str, Any]] | None = None,
    reference_runner: Callable[[], dict[str, Any]] | None = None,
    log: Log = lambda _: None,
) -> dict[str, pd.DataFrame]:
    """Measure the floor, then the chosen sections; every row carries the environment."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise UsageError(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    env = environment_row(device)
    data = DeviceData.with_validation(split, device, val_size=min(5000, len(split) // 10 or 1))
    log("floor: matmul rate and copy bandwidth")
    floor = _floor(device, settings)
    out = {"floor": pd.DataFrame([{**floor, **env}])}
    run = _Run(settings, split, data, device, env, floor["matmul_tflops"] * 1e12, floor["copy_gb_per_s"] * 1e9,
               log, search_runner, reference_runner)  # fmt: skip
    for name, measure in _SECTION_RUNS.items():
        if name in sections and (frame := measure(run)) is not None:
            out[name] = frame
    return out


def bench_on(
    settings: BenchSettings,
    device: torch.device,
    *,
    data_dir: Path,
    verify: bool,
    sections: tuple[str, ...] = SECTIONS,
    log: Log = lambda _: None,
) -> dict[str, pd.DataFrame]:
    """``mnist-bench bench``: the training split loaded once, every section run on ``device``,
    the search section's two searches (``search_throughput``, ``hand_written_search``) among them."""
    split = ensure_split(data_dir, "train", verify=verify)

    def search_runner(workers: int, parallel: int) -> dict[str, Any]:
        return search_throughput(
            workers,
            parallel,
            device=str(device),
            data_dir=data_dir,
            verify=verify,
            trials=settings.search_trials,
            epochs=settings.search_epochs,
        )

    def reference_runner() -> dict[str, Any]:
        return hand_written_search(split, device, trials=settings.search_trials, epochs=settings.search_epochs)

    return run_bench(
        settings, split, device, sections=sections, search_runner=search_runner, reference_runner=reference_runner,
        log=log,
    )  # fmt: skip


def write_results(results: dict[str, pd.DataFrame], out_dir: Path, settings: BenchSettings) -> list[Path]:
    """CSV and Markdown per section, one JSON with everything, and the throughput plot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in results.items():
        for suffix, text in ((".csv", frame.to_csv(index=False)), (".md", to_markdown(frame))):
            path = out_dir / f"{name}{suffix}"
            path.write_text(text)
            paths.append(path)
    everything = {
        "settings": asdict(settings),
        "results": {name: json.loads(frame.to_json(orient="records")) for name, frame in results.items()},
    }
    json_path = out_dir / "bench.json"
    json_path.write_text(json.dumps(everything, indent=2) + "\n")
    paths.append(json_path)
    if "training" in results:
        paths.append(throughput_png(results["training"], out_dir / "throughput.png"))
    return paths


def throughput_png(frame: pd.DataFrame, path: Path) -> Path:
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for network, rows in frame.groupby("network", sort=False):
        ax.plot(rows["batch_size"], rows["samples_per_s"], marker="o", label=str(network))
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch size",
        ylabel="training samples/s (median)",
        title=f"Trainer throughput on {frame['env_device_name'].iloc[0]}",
    )
    ax.set_xticks(sorted(frame["batch_size"].unique()), labels=[str(b) for b in sorted(frame["batch_size"].unique())])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path
