"""The bench command: timing benchmarks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from mnist_bench.cli.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_STUDIES_DIR,
    DataDir,
    Device,
    NoVerify,
    Precision,
    Steps,
    StepsOpt,
    StudiesDir,
    app,
    make_console,
    runtime_from,
)
from mnist_bench.measure.suite import SECTIONS, BenchSettings, bench_on, write_results
from mnist_bench.output.console import (
    BENCH_COLUMNS,
    frame_table,
)
from mnist_bench.training.device import resolve_device

_FULL, _QUICK = BenchSettings(), BenchSettings.quick()


def _either(name: str) -> str:
    """A setting's default as --help shows it: the full run's, and --quick's where it differs."""

    def shown(value: object) -> str:
        return ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    full, quick = shown(getattr(_FULL, name)), shown(getattr(_QUICK, name))
    return full if full == quick else f"{full}; --quick {quick}"


# bench's own options, each with the default it shows: the full run's, and --quick's where it differs.
Quick = Annotated[bool, typer.Option("--quick", help="A short run (every section, few points) that CI affords.")]
Networks = Annotated[
    list[str] | None,
    typer.Option(
        "--network", "-n", help="Network to time, e.g. 784-128-10; repeat for more.", show_default=_either("networks")
    ),
]
BatchSizes = Annotated[
    list[int] | None,
    typer.Option(
        "--batch-size", "-b", help="Batch size to time; repeat for more.", show_default=_either("batch_sizes")
    ),
]
Precisions = Annotated[
    list[Precision] | None,
    typer.Option(
        "--precision",
        help="Precisions for the runtime section; repeat for more (the default skips those the device lacks).",
        show_default=_either("precisions"),
    ),
]
NoCompile = Annotated[bool, typer.Option("--no-compile", help="Leave torch.compile out of the runtime section.")]
WorkerCounts = Annotated[
    list[int] | None,
    typer.Option(
        "--worker-counts",
        "-w",
        help="How many trials at once to time (worker processes in the packing and search sections); repeat for more.",
        show_default=_either("workers"),
    ),
]
Sections = Annotated[
    list[str] | None, typer.Option("--section", help=f"Sections to run: {', '.join(SECTIONS)}.", show_default="all")
]
Repeats = Annotated[
    int | None, typer.Option(help="Timed repeats per figure (median reported).", show_default=_either("repeats"))
]
SearchTrials = Annotated[
    int | None, typer.Option(help="Trials per timed search.", show_default=_either("search_trials"))
]
SearchEpochs = Annotated[
    int | None, typer.Option(help="Most epochs per trial of a timed search.", show_default=_either("search_epochs"))
]
BenchOut = Annotated[
    Path | None,
    typer.Option("--out", help="Output folder.", show_default="STUDIES_DIR/bench/cpu or STUDIES_DIR/bench/cuda"),
]


def trusted_settings(settings: BenchSettings, device: str, precisions: list[Precision], steps: Steps) -> BenchSettings:
    """``settings`` as far as ``device`` can run and its self-check trusts them.

    Precisions asked for that the device lacks are refused; what bench times on CUDA
    (graphed steps, trainings side by side) goes through the self-check first, and a path
    it does not trust is left out, as the command says."""
    for precision in precisions:
        runtime_from(precision, False, [device], steps=Steps["graphed"])
    runtime, in_flight = runtime_from(
        Precision["fp32"], False, [device], steps=steps, parallel=max((*settings.inflight, *settings.workers))
    )
    if not runtime.graphs:
        settings = replace(settings, graphs=False)
    if in_flight == 1:
        settings = replace(settings, inflight=(1,), search_parallel=())
    return settings


@app.command()
def bench(
    quick: Quick = False,
    network: Networks = None,
    batch_size: BatchSizes = None,
    precision: Precisions = None,
    no_compile: NoCompile = False,
    worker_counts: WorkerCounts = None,
    section: Sections = None,
    repeats: Repeats = None,
    search_trials: SearchTrials = None,
    search_epochs: SearchEpochs = None,
    steps: StepsOpt = Steps["auto"],
    out: BenchOut = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
) -> None:
    """Time the trainer against the hardware floor and the classic DataLoader pipeline."""
    torch_device = resolve_device(device)
    settings = (_QUICK if quick else _FULL).given(
        networks=network,
        batch_sizes=batch_size,
        precisions=[p.value for p in precision or ()],
        compile=False if no_compile else None,
        workers=worker_counts,
        repeats=repeats,
        search_trials=search_trials,
        search_epochs=search_epochs,
    )
    settings = trusted_settings(settings, device, precision or [], steps)
    console = make_console()
    console.print(f"Benchmarking on {torch_device} ({'quick' if quick else 'full'} run)...")
    results = bench_on(
        settings,
        torch_device,
        data_dir=data_dir,
        verify=not no_verify,
        sections=tuple(section) if section else SECTIONS,
        log=lambda line: console.print(f"[dim]{line}[/]"),
    )
    for name, frame in results.items():
        console.print(frame_table(frame, BENCH_COLUMNS[name], title=name))
    folder = out or Path(studies_dir) / "bench" / torch_device.type
    paths = write_results(results, folder, settings)
    console.print(f"Written to {folder}: " + ", ".join(p.name for p in paths))
