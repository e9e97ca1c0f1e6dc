"""The bench command: timing benchmarks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from mnist_bench.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    Device,
    NoVerify,
    Precision,
    Steps,
    StepsOpt,
    StudiesDir,
    app,
    make_console,
    require_positive,
    runtime_from,
)
from mnist_bench.data import ensure_split
from mnist_bench.measure.reference import hand_written_search
from mnist_bench.measure.suite import SECTIONS, BenchSettings, run_bench, search_throughput, write_results
from mnist_bench.output.console import (
    BENCH_COLUMNS,
    frame_table,
)
from mnist_bench.training.device import resolve_device


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="A short run (every section, few points) that CI affords.")
    ] = False,
    network: Annotated[
        list[str] | None, typer.Option("--network", "-n", help="Network to time, e.g. 784-128-10; repeat for more.")
    ] = None,
    batch_size: Annotated[
        list[int] | None, typer.Option("--batch-size", "-b", help="Batch size to time; repeat for more.")
    ] = None,
    precision: Annotated[
        list[Precision] | None,
        typer.Option(help="Precisions for the runtime section; repeat for more. [default: all the device has]"),
    ] = None,
    no_compile: Annotated[
        bool, typer.Option("--no-compile", help="Leave torch.compile out of the runtime section.")
    ] = False,
    workers: Annotated[
        list[int] | None,
        typer.Option("--workers", "-w", help="Trials at once to time (packing, search); repeat for more."),
    ] = None,
    section: Annotated[
        list[str] | None, typer.Option(help=f"Sections to run: {', '.join(SECTIONS)}. [default: all]")
    ] = None,
    repeats: Annotated[int | None, typer.Option(help="Timed repeats per figure (median reported).")] = None,
    search_trials: Annotated[int | None, typer.Option(help="Trials per timed search. [default: 8; --quick 2]")] = None,
    search_epochs: Annotated[
        int | None, typer.Option(help="Most epochs per trial of a timed search. [default: 2; --quick 1]")
    ] = None,
    steps: StepsOpt = Steps["auto"],
    out: Annotated[Path | None, typer.Option(help="Output folder. [default: studies/bench/<device>]")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = Path("studies"),
) -> None:
    """Time the trainer against the hardware floor and the classic DataLoader pipeline."""
    torch_device = resolve_device(device)
    base = BenchSettings.quick() if quick else BenchSettings()
    changes: dict[str, Any] = {}
    if network:
        changes["networks"] = tuple(network)
    if batch_size:
        changes["batch_sizes"] = tuple(batch_size)
    if precision:
        runtime_devices = [str(torch_device)]
        for p in precision:
            runtime_from(p, False, runtime_devices, steps=Steps["graphed"])  # asked for: refuse what the device lacks
        changes["precisions"] = tuple(p.value for p in precision)
    if no_compile:
        changes["compile"] = False
    if workers:
        changes["workers"] = tuple(workers)
    if repeats is not None:
        changes["repeats"] = repeats
    for name, value in (("search_trials", search_trials), ("search_epochs", search_epochs)):
        require_positive(f"--{name.replace('_', '-')}", value)
        if value is not None:
            changes[name] = value
    settings = replace(base, **changes)
    # What bench times on CUDA (graphed steps, trainings side by side) goes through the
    # self-check first: a path it does not trust is left out, and the command says so.
    trusted_runtime, in_flight = runtime_from(
        Precision["fp32"], False, [device], steps=steps, parallel=max((*settings.inflight, *settings.workers))
    )
    if not trusted_runtime.graphs:
        settings = replace(settings, graphs=False)
    if in_flight == 1:
        settings = replace(settings, inflight=(1,), search_parallel=())
    split = ensure_split(data_dir, "train", verify=not no_verify)
    console = make_console()
    console.print(f"Benchmarking on {torch_device} ({'quick' if quick else 'full'} run)...")

    def search_runner(n: int, parallel: int) -> dict[str, Any]:
        return search_throughput(
            n,
            parallel,
            device=str(torch_device),
            data_dir=data_dir,
            verify=not no_verify,
            trials=settings.search_trials,
            epochs=settings.search_epochs,
        )

    results = run_bench(
        settings,
        split,
        torch_device,
        sections=tuple(section) if section else SECTIONS,
        search_runner=search_runner,
        reference_runner=lambda: hand_written_search(
            split, torch_device, trials=settings.search_trials, epochs=settings.search_epochs
        ),
        log=lambda line: console.print(f"[dim]{line}[/]"),
    )
    for name, frame in results.items():
        console.print(frame_table(frame, BENCH_COLUMNS[name], title=name))
    folder = out or Path(studies_dir) / "bench" / torch_device.type
    paths = write_results(results, folder, settings)
    console.print(f"Written to {folder}: " + ", ".join(p.name for p in paths))
