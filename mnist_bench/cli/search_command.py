"""The search command: options in, ``search.job.run_search``, trials and leaderboard out."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import optuna
import typer
from optuna.trial import FrozenTrial
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mnist_bench.cli.common import (
    AUGMENT_CHOICES,
    DEFAULT_DATA_DIR,
    Augment,
    CompileOpt,
    DataDir,
    Device,
    NoVerify,
    Precision,
    PrecisionOpt,
    Pruner,
    Sampler,
    Steps,
    StepsOpt,
    Storage,
    StudiesDir,
    StudyName,
    app,
    make_console,
    runtime_from,
)
from mnist_bench.errors import MnistBenchError
from mnist_bench.interrupt import sigint_as_event
from mnist_bench.output.console import (
    leaderboard_table,
    stopped_line,
    trial_line,
)
from mnist_bench.search.capacity import trial_bytes
from mnist_bench.search.job import StudyStart, run_search
from mnist_bench.search.leaderboard import trial_row
from mnist_bench.search.space import SearchSpace, load_space
from mnist_bench.search.study import DEFAULT_STUDY, SearchSettings, best_accuracy
from mnist_bench.search.workers import plan_workers
from mnist_bench.storage.heartbeats import StoppedWait
from mnist_bench.storage.rdb import HEARTBEAT_S, default_storage, redact
from mnist_bench.storage.trial_states import counts_text
from mnist_bench.training.device import resolve_device
from mnist_bench.training.lanes import parse_parallel

MixedVersions = Annotated[
    bool,
    typer.Option(
        "--mixed-versions",
        help="Resume a study made by a version with other random streams (its seeds then give other "
        "trials); the leaderboard marks each trial's streams version.",
    ),
]


def parallel_option(value: str, device: str, space: SearchSpace) -> int:
    """``--parallel`` as a count of trials in flight; a malformed one is a usage error (exit 2)."""
    try:
        return parse_parallel(value, resolve_device(device), largest_trial_bytes=trial_bytes(space, 0, 0))
    except MnistBenchError as exc:
        raise typer.BadParameter(str(exc).removeprefix(f"--parallel {value!r}: "), param_hint="--parallel") from None


def trial_progress(console: Console, *, quiet: bool) -> Progress:
    """The bar of finished trials (on a terminal, unless ``quiet``), gone when the search ends."""
    return Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal or quiet,
        transient=True,
    )


def training_where(devices: list[str], in_flight: int) -> str:
    """Where the trials train, for the search's first line."""
    n = len(devices)
    where = devices[0] if n == 1 else f"{n} workers on {', '.join(sorted(set(devices)))}"
    if in_flight > 1:
        where += f", {in_flight} trials side by side" + (" in each" if n > 1 else "")
    return where


@app.command()
def search(
    trials: Annotated[
        int,
        typer.Option(help="Finished (complete or pruned) trials the study should hold in total; a rerun tops it up."),
    ] = 50,
    epochs: Annotated[int, typer.Option(help="Most epochs one trial may train (pruning may stop it sooner).")] = 10,
    study: StudyName = DEFAULT_STUDY,
    storage: Storage = None,
    space: Annotated[
        str,
        typer.Option(help="Search space: a shipped one's name (see `mnist-bench spaces`) or the path of a TOML file."),
    ] = "default",
    pruner: Annotated[Pruner, typer.Option(help="Stop unpromising trials early.")] = Pruner.median,
    sampler: Annotated[Sampler, typer.Option(help="How the next trial's parameters are chosen.")] = Sampler.tpe,
    objective: Annotated[
        str,
        typer.Option(
            help="What to optimize: accuracy, or accuracy with latency and/or params (comma-separated), "
            "a multi-objective search with a Pareto front; Optuna cannot prune those."
        ),
    ] = "accuracy",
    seed: Annotated[
        int | None, typer.Option(help="Seed for the sampler and every trial's training; repeatable runs.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds after which no new trial starts.")] = None,
    val_size: Annotated[
        int, typer.Option(help="Training images held out as the validation split the search optimizes.")
    ] = 5000,
    top: Annotated[int, typer.Option(help="Trials shown in the final leaderboard.")] = 10,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-trial lines or progress bar.")] = False,
    workers: Annotated[
        str,
        typer.Option(
            help="Trials trained at once, each in a worker process sharing the study through its storage "
            "(1: in this process), or auto: as many as the device's free memory, the space's largest trial "
            "and the CPU cores allow (at most 8 per device)."
        ),
    ] = "1",
    parallel: Annotated[
        str,
        typer.Option(
            help="Trials in flight side by side in each process, each with its own model, optimizer and "
            "CUDA stream, one epoch per round (deterministic with --seed); auto: 1 on a CPU, on a GPU as many "
            "as free memory allows (at most 16). Combines with --workers: K trials in each worker."
        ),
    ] = "1",
    devices: Annotated[
        str | None,
        typer.Option(
            help="Devices for the workers, round-robin: auto (every GPU) or cuda:0,cuda:1,... Unset: --device."
        ),
    ] = None,
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between a running trial's heartbeats; after 3 missed it is failed and retried.")
    ] = HEARTBEAT_S,
    storage_retry: Annotated[
        float,
        typer.Option(
            help="Seconds to keep retrying a storage that stops answering before giving up, whatever "
            "--parallel; the trials in flight then are failed once it answers, and others take their places. "
            "Trials stored are kept either way."
        ),
    ] = 60.0,
    augment: Annotated[
        Augment | None,
        typer.Option(help="Fix the augmentation instead of the space's choice: " + AUGMENT_CHOICES + "."),
    ] = None,
    mixed_versions: MixedVersions = False,
    precision: PrecisionOpt = Precision.fp32,
    compile: CompileOpt = False,
    steps: StepsOpt = Steps.auto,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = Path("studies"),
) -> None:
    """Run (or resume) an Optuna study over MLPs; print and save its leaderboard."""
    settings = SearchSettings(
        study=study,
        storage=storage or default_storage(studies_dir),
        trials=trials,
        epochs=epochs,
        pruner=pruner.value,
        sampler=sampler.value,
        seed=seed,
        timeout=timeout,
        val_size=val_size,
        heartbeat_s=heartbeat,
        storage_retry_s=storage_retry,
        objectives=tuple(part.strip() for part in objective.split(",") if part.strip()),
        mixed_versions=mixed_versions,
    )
    search_space = load_space(space)
    if augment is not None:
        search_space = replace(search_space, augments=(augment.value,))
    worker_devices, auto_line = plan_workers(workers, devices or device, search_space, val_size=val_size)
    runtime, in_flight = runtime_from(
        precision,
        compile,
        worker_devices,
        steps=steps,
        parallel=parallel_option(parallel, worker_devices[0], search_space),
    )
    settings = replace(settings, runtime=runtime, parallel=in_flight)

    console = make_console()
    progress = trial_progress(console, quiet=quiet)
    task = progress.add_task("search", total=0, best="")
    where = training_where(worker_devices, in_flight)
    ran = 0

    def on_start(start: StudyStart) -> None:
        if settings.multi_objective and pruner is not Pruner.none:
            console.print(f"Note: Optuna cannot prune multi-objective studies: --pruner {pruner.value} is ignored.")
        if auto_line:
            console.print(auto_line)
        console.print(
            f"Study [bold]{study}[/] in {redact(settings.storage)}: {start.trials} trial(s) so far; "
            f"target {trials} finished; training on {where}, {epochs} epoch(s) max."
        )
        progress.update(task, total=start.missing)
        live.enter_context(progress)

    def on_trial(s: optuna.Study, frozen: FrozenTrial) -> None:
        nonlocal ran
        ran += 1
        best = best_accuracy(s)
        if not quiet:
            console.print(trial_line(trial_row(frozen, search_space), best), markup=False)
        progress.update(task, advance=1, best=f"best {best:.4f}" if best is not None else "")

    def on_notice(line: str) -> None:
        console.print(f"[yellow]Note: {escape(line)}[/]")

    def on_wait(wait: StoppedWait) -> None:  # trials of stopped workers, retried once their grace is over
        console.print(stopped_line(wait), markup=False)

    with sigint_as_event() as stop:
        with contextlib.ExitStack() as live:  # the progress bar, from the start of the trials to their end
            run = run_search(
                settings,
                search_space,
                devices=worker_devices,
                data_dir=data_dir,
                verify=not no_verify,
                studies_dir=studies_dir,
                stop=stop,
                on_start=on_start,
                on_trial=on_trial,
                on_notice=on_notice,
                on_wait=on_wait,
            )
    console.print(leaderboard_table(run.frame, top=top, title=f"Top {min(top, len(run.frame))} of study {study}"))
    console.print(
        f"Ran {ran} trial(s). Study {study} now holds {len(run.study.trials)} trials ({counts_text(run.counts)}); "
        f"{run.finished}/{trials} finished."
    )
    console.print("Leaderboard written to " + " and ".join(str(p) for p in run.paths))
    if run.interrupted:
        typer.echo(f"Interrupted: run the same command again to resume study {study}.", err=True)
        raise typer.Exit(130)
    if run.finished < trials:
        console.print(f"Run the same command again to reach {trials} finished trials.")
