"""The search command: options in, ``search.job.run_search``, trials and leaderboard out."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from typing import Annotated

import typer

from mnist_bench.cli.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_STUDIES_DIR,
    Augment,
    AugmentOpt,
    CompileOpt,
    DataDir,
    Device,
    NoVerify,
    Parallel,
    Precision,
    PrecisionOpt,
    Quiet,
    Steps,
    StepsOpt,
    Storage,
    StudiesDir,
    StudyName,
    StudySeed,
    app,
    make_console,
    runtime_from,
    study_options,
)
from mnist_bench.config import precision_spec
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.interrupt import sigint_as_event
from mnist_bench.output.progress import SearchLines
from mnist_bench.search.capacity import trial_bytes
from mnist_bench.search.job import run_search
from mnist_bench.search.objectives import FIRST, OBJECTIVES, parse_objectives
from mnist_bench.search.pruners import (
    DEFAULT_PRUNER,
    MULTI_OBJECTIVE_DEFAULT,
    PRUNERS,
    multi_objective_pruners,
)
from mnist_bench.search.samplers import SAMPLERS
from mnist_bench.search.space import SearchSpace, load_space
from mnist_bench.search.stopping import MIN_PATIENCE, PATIENCE_RATIO
from mnist_bench.search.study import DEFAULT_STUDY, SearchSettings
from mnist_bench.search.workers import plan_workers
from mnist_bench.storage.rdb import HEARTBEAT_S, default_storage
from mnist_bench.training.device import resolve_device
from mnist_bench.training.lanes import parse_parallel

DEFAULT_TRIAL_EPOCHS = 10  # --epochs where a space does not search them

# The choices of the search's registries, as Typer reads them: here, not in common, so that a
# command without a search (speedrun) imports neither them nor Optuna.
Sampler = StrEnum("Sampler", [(name, name) for name in SAMPLERS])  # type: ignore[misc]
Pruner = StrEnum("Pruner", [(name, name) for name in PRUNERS])  # type: ignore[misc]
SAMPLER_CHOICES = "; ".join(f"{spec.name} ({spec.help})" for spec in SAMPLERS.values())
PRUNER_CHOICES = "; ".join(f"{spec.name} ({spec.help})" for spec in PRUNERS.values())
OBJECTIVE_CHOICES = "; ".join(f"{spec.name} ({spec.help})" for spec in OBJECTIVES.values())
SamplerOpt = Annotated[
    Sampler, typer.Option(help="How the next trial's parameters are chosen: " + SAMPLER_CHOICES + ".")
]
PrunerOpt = Annotated[
    Pruner | None,
    typer.Option(
        help=f"Which trials stop early, and when: {PRUNER_CHOICES}. With several --objective, only "
        f"{' or '.join(multi_objective_pruners())}.",
        show_default=f"{DEFAULT_PRUNER}; {MULTI_OBJECTIVE_DEFAULT} with several --objective",
    ),
]
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


def objectives_option(value: str) -> str:
    """``--objective`` checked against the registry; a bad one is a usage error (exit 2)."""
    try:
        parse_objectives(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def training_where(devices: list[str], in_flight: int) -> str:
    """Where the trials train, for the search's first line."""
    n = len(devices)
    where = devices[0] if n == 1 else f"{n} workers on {', '.join(sorted(set(devices)))}"
    if in_flight > 1:
        where += f", {in_flight} trials side by side" + (" in each" if n > 1 else "")
    return where


# The search's own options, declared once each.
Trials = Annotated[
    int, typer.Option(help="Finished (complete or pruned) trials the study should hold in total; a rerun tops it up.")
]
TrialEpochs = Annotated[
    int | None,
    typer.Option(
        help="Most epochs one trial may train (pruning may stop it sooner); a space that searches epochs "
        "(its `epochs` key) sets them per trial instead.",
        show_default=str(DEFAULT_TRIAL_EPOCHS),
    ),
]
SpaceName = Annotated[
    str, typer.Option(help="Search space: a shipped one's name (see `mnist-bench spaces`) or the path of a TOML file.")
]
Objective = Annotated[
    str,
    typer.Option(
        callback=objectives_option,
        help=f"What to optimize, comma-separated, {FIRST} first: " + OBJECTIVE_CHOICES + ". More than one "
        "is a multi-objective search with a Pareto front, pruned by all of them at once (--pruner).",
    ),
]
Timeout = Annotated[
    float | None, typer.Option(help="Seconds after which no new trial starts.", show_default="no limit")
]
ReportsPerEpoch = Annotated[
    int,
    typer.Option(
        min=1,
        help="Times a trial reports its validation accuracy to --pruner each epoch, each after an equal "
        "share of the epoch's steps: more lets a pruner stop a hopeless trial part way into an epoch. "
        "The median's warm-up and Hyperband's budgets stay in epochs, asha's rungs are reports; "
        "a study keeps the value it was made with.",
    ),
]
ValSize = Annotated[int, typer.Option(help="Training images held out as the validation split the search optimizes.")]
Top = Annotated[int, typer.Option(help="Trials shown in the final leaderboard.")]
Workers = Annotated[
    str,
    typer.Option(
        help="Trials trained at once, each in a worker process sharing the study through its storage "
        "(1: in this process), or auto: as many as the device's free memory, the space's largest trial "
        "and the CPU cores allow (at most 8 per device); --parallel K trials in each."
    ),
]
Devices = Annotated[
    str | None,
    typer.Option(
        help="Devices for the workers, round-robin: auto (every GPU) or cuda:0,cuda:1,...", show_default="--device"
    ),
]
Heartbeat = Annotated[
    int, typer.Option(help="Seconds between a running trial's heartbeats; after 3 missed it is failed and retried.")
]
StopWhenFlat = Annotated[
    bool,
    typer.Option(
        "--stop-when-flat",
        help="Make --trials a cap: stop starting trials once the best validation accuracy has not moved "
        f"beyond its standard error for max({MIN_PATIENCE}, {PATIENCE_RATIO:g} × the finished trials up to its "
        "last move) finished trials; trials in flight finish. One objective only.",
    ),
]
StorageRetry = Annotated[
    float,
    typer.Option(
        help="Seconds to keep retrying a storage that stops answering before giving up, whatever "
        "--parallel; the trials in flight then are failed once it answers, and others take their places. "
        "Trials stored are kept either way."
    ),
]


def search_plan(
    settings: SearchSettings,
    space: str,
    augment: Augment | None,
    *,
    workers: str,
    devices: str,
    parallel: str,
    runtime: tuple[Precision, bool, Steps],
    epochs: int | None = None,
) -> tuple[SearchSettings, SearchSpace, list[str], list[str]]:
    """The settings with their runtime and trials in flight, the space, the workers' devices,
    and the notes the search prints first; every option checked before anything trains."""
    search_space = load_space(space)
    settings = epochs_for(settings, search_space, epochs)
    if augment is not None:
        search_space = replace(search_space, augments=(augment.value,))
    worker_devices, auto_line = plan_workers(workers, devices, search_space, val_size=settings.val_size)
    precision, compile, steps = runtime
    in_flight = parallel_option(parallel, worker_devices[0], search_space)
    trusted, in_flight = runtime_from(precision, compile, worker_devices, steps=steps, parallel=in_flight)
    check_precisions(search_space, worker_devices)
    intro = [auto_line] if auto_line else []
    return replace(settings, runtime=trusted, parallel=in_flight), search_space, worker_devices, intro


def epochs_for(settings: SearchSettings, space: SearchSpace, epochs: int | None) -> SearchSettings:
    """The settings' most epochs a trial trains: --epochs, or the top of the space's epochs
    range where it searches them (then --epochs is a usage error: the space decides)."""
    if not space.searches_epochs:
        return replace(settings, epochs=DEFAULT_TRIAL_EPOCHS if epochs is None else epochs)
    if epochs is not None:
        low, high = space.epochs
        raise UsageError(f"--epochs {epochs}: this space searches each trial's epochs ({low}-{high}); leave it out")
    return replace(settings, epochs=space.epochs[1])


def check_precisions(space: SearchSpace, devices: list[str]) -> None:
    """Every precision a space searches trains on every device of the search: one line otherwise."""
    for precision in space.precisions:
        for device in devices:
            try:
                precision_spec(precision).check(resolve_device(device))
            except ValueError as exc:
                raise UsageError(f"search space: precisions = {list(space.precisions)}: {exc}") from None


@app.command()
def search(
    trials: Trials = 50,
    epochs: TrialEpochs = None,
    study: StudyName = DEFAULT_STUDY,
    storage: Storage = None,
    space: SpaceName = "default",
    pruner: PrunerOpt = None,
    reports_per_epoch: ReportsPerEpoch = 1,
    sampler: SamplerOpt = Sampler["tpe"],
    objective: Objective = FIRST,
    seed: StudySeed = None,
    timeout: Timeout = None,
    stop_when_flat: StopWhenFlat = False,
    val_size: ValSize = 5000,
    top: Top = 10,
    quiet: Quiet = False,
    workers: Workers = "1",
    parallel: Parallel = "1",
    devices: Devices = None,
    heartbeat: Heartbeat = HEARTBEAT_S,
    storage_retry: StorageRetry = 60.0,
    augment: AugmentOpt = None,
    mixed_versions: MixedVersions = False,
    precision: PrecisionOpt = Precision["fp32"],
    compile: CompileOpt = False,
    steps: StepsOpt = Steps["auto"],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
) -> None:
    """Run (or resume) an Optuna study over MLPs; print and save its leaderboard."""
    settings = SearchSettings(
        study=study, storage=storage or default_storage(studies_dir), trials=trials,
        epochs=DEFAULT_TRIAL_EPOCHS if epochs is None else epochs, pruner=pruner.value if pruner else "",
        reports_per_epoch=reports_per_epoch, sampler=sampler.value, seed=seed, timeout=timeout, val_size=val_size,
        heartbeat_s=heartbeat, storage_retry_s=storage_retry, objectives=parse_objectives(objective),
        mixed_versions=mixed_versions, stop_when_flat=stop_when_flat,
    )  # fmt: skip
    settings, search_space, worker_devices, intro = search_plan(
        settings, space, augment, workers=workers, devices=devices or device, parallel=parallel,
        runtime=(precision, compile, steps), epochs=epochs,
    )  # fmt: skip
    where = training_where(worker_devices, settings.parallel)
    lines = SearchLines(
        make_console(), quiet=quiet, space=search_space, intro=intro, where=where,
        options=study_options(storage, studies_dir),
    )  # fmt: skip
    with sigint_as_event() as stop, lines.live:
        run = run_search(
            settings, search_space, devices=worker_devices, data_dir=data_dir, verify=not no_verify,
            studies_dir=studies_dir, stop=stop, on_start=lines.start, on_trial=lines.trial, on_notice=lines.notice,
            on_wait=lines.wait,
        )  # fmt: skip
    lines.end(run, top=top)
    if run.interrupted:
        typer.echo(f"Interrupted: run the same command again to resume study {study}.", err=True)
        raise typer.Exit(130)
