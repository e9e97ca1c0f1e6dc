"""The ``mnist-bench`` command line: options in, one library call, rendered output out."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import optuna
import typer
from optuna.trial import FrozenTrial
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from mnist_bench import __version__, checkpoint
from mnist_bench.baselines import BASELINES, Baseline, describe, run_baselines
from mnist_bench.bench_suite import SECTIONS, BenchSettings, run_bench, search_throughput, write_results
from mnist_bench.data import DeviceData, default_data_dir, ensure_split
from mnist_bench.device import resolve_device
from mnist_bench.errors import MnistBenchError
from mnist_bench.evaluate import TestData, evaluate, save_final, seeds_from, train_and_test
from mnist_bench.interrupt import sigint_as_event
from mnist_bench.leaderboard import export, leaderboard, study_dir, trial_row, write_leaderboard
from mnist_bench.model import ModelConfig
from mnist_bench.predict import predict_files
from mnist_bench.render import (
    BENCH_COLUMNS,
    baselines_table,
    confusion_table,
    counts_line,
    frame_table,
    key_value_table,
    leaderboard_table,
    per_class_table,
    predictions_table,
    seeds_line,
    trial_line,
)
from mnist_bench.search import (
    DEFAULT_STUDY,
    SearchSettings,
    n_finished,
    open_study,
    pick_trial,
    run_search,
    state_counts,
    stored_space,
    trial_config,
)
from mnist_bench.space import load_space
from mnist_bench.storage import HEARTBEAT_S, default_storage, load_study, open_storage, redact
from mnist_bench.train import Runtime, TrainConfig
from mnist_bench.workers import WorkerJob, plan_devices, run_workers


class _OneLineErrors(TyperGroup):
    """Every error a user can cause ends as one 'Error: ...' line and a non-zero exit."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        passthrough = (args, prog_name, complete_var)
        if not standalone_mode:
            return super().main(*passthrough, False, windows_expand_args, **extra)
        try:
            code = super().main(*passthrough, False, windows_expand_args, **extra)
        except MnistBenchError as exc:
            typer.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except typer.TyperException as exc:  # click's usage errors: bad option, bad value
            format_message = getattr(exc, "format_message", None)
            message = format_message() if format_message else str(exc)
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(message, err=True)  # that message is the help page
            else:
                typer.echo(f"Error: {message}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    help="Find, measure and reproduce the best multilayer perceptron for MNIST.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Pruner(StrEnum):
    median = "median"
    hyperband = "hyperband"
    none = "none"


class Sampler(StrEnum):
    tpe = "tpe"
    random = "random"


class Background(StrEnum):
    auto = "auto"
    dark = "dark"
    light = "light"


class Optimizer(StrEnum):
    sgd = "sgd"
    adam = "adam"


class Precision(StrEnum):
    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    markdown = "markdown"
    json = "json"


DEFAULT_DATA_DIR = default_data_dir()
StudiesDir = Annotated[
    Path,
    typer.Option(
        envvar="MNIST_BENCH_STUDIES",
        help="Folder for search spaces (<name>.toml), the default SQLite storage and each study's outputs.",
    ),
]
StudyName = Annotated[str, typer.Option("--study", help="Study name in the storage.")]
Storage = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL: sqlite:///..., postgresql+psycopg://..., mysql+pymysql://... "
        "Unset: SQLite in --studies-dir."
    ),
]
DataDir = Annotated[
    Path,
    typer.Option(envvar="MNIST_BENCH_DATA", help="Folder holding MNIST/raw/*-ubyte[.gz]; downloaded there if absent."),
]
Device = Annotated[str, typer.Option(help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N.")]
Seeds = Annotated[
    int, typer.Option(help="Train this many times (seeds s, s+1, ...) and report test accuracy as mean and std.")
]
PrecisionOpt = Annotated[
    Precision, typer.Option(help="Matmul precision: fp32, tf32 (CUDA, Ampere+) or bf16 (autocast).")
]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="torch.compile the model (CUDA graphs on CUDA); eager otherwise.")
]
NoVerify = Annotated[
    bool, typer.Option("--no-verify", help="Skip the MNIST checksum check (for other data in the same format).")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnist-bench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    # The CLI prints its own line per trial, with the reason a trial failed; Optuna's log
    # would repeat it (with a traceback for a Ctrl-C).
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _console() -> Console:
    # A pipe or file gets wide lines rather than an 80-column table squeezed to ellipses.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


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
        str, typer.Option(help="Search space: a name in --studies-dir (<name>.toml) or a TOML path.")
    ] = "default",
    pruner: Annotated[Pruner, typer.Option(help="Stop unpromising trials early.")] = Pruner.median,
    sampler: Annotated[Sampler, typer.Option(help="How the next trial's parameters are chosen.")] = Sampler.tpe,
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
        int, typer.Option(help="Worker processes sharing the study through its storage (1: run in this process).")
    ] = 1,
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
        float, typer.Option(help="Seconds to keep retrying a storage that stops answering before giving up.")
    ] = 60.0,
    precision: PrecisionOpt = Precision.fp32,
    compile: CompileOpt = False,
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
    )
    search_space = load_space(space, studies_dir)
    worker_devices = plan_devices(devices or device, workers)
    settings = replace(settings, runtime=_runtime(precision, compile, worker_devices))
    # Open the storage and check the study before the (slower) data load.
    optuna_study = open_study(settings, search_space, open_storage(settings.storage, heartbeat_s=heartbeat))
    data = None
    if workers == 1:  # in this process; several workers load their own copies
        split = ensure_split(data_dir, "train", verify=not no_verify)
        data = DeviceData.with_validation(split, resolve_device(worker_devices[0]), val_size=val_size)

    console = _console()
    where = worker_devices[0] if workers == 1 else f"{workers} workers on {', '.join(sorted(set(worker_devices)))}"
    console.print(
        f"Study [bold]{study}[/] in {redact(settings.storage)}: {len(optuna_study.trials)} trial(s) so far; "
        f"target {trials} finished; training on {where}, {epochs} epoch(s) max."
    )
    progress = Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal or quiet,
        transient=True,
    )
    task = progress.add_task("search", total=max(trials - n_finished(optuna_study), 0), best="")

    ran = 0

    def on_trial(s: optuna.Study, frozen: FrozenTrial) -> None:
        nonlocal ran
        ran += 1
        try:
            best = s.best_value
        except ValueError:
            best = None
        if not quiet:
            console.print(trial_line(trial_row(frozen, search_space), best), markup=False)
        progress.update(task, advance=1, best=f"best {best:.4f}" if best is not None else "")

    interrupted = False
    try:
        with progress, sigint_as_event() as stop:
            if data is not None:
                run_search(settings, search_space, data, on_trial=on_trial, study=optuna_study, stop=stop)
            else:
                job = WorkerJob(settings, search_space, data_dir, not no_verify, tuple(worker_devices))
                run_workers(job, optuna_study, on_trial=on_trial, stop=stop)
    except KeyboardInterrupt:
        interrupted = True

    # Read the study back from storage: workers and other machines wrote to it too.
    final = load_study(study, open_storage(settings.storage))
    counts = state_counts(final)
    frame = leaderboard(final, search_space)
    paths = write_leaderboard(frame, study_dir(studies_dir, study))
    console.print(leaderboard_table(frame, top=top, title=f"Top {min(top, len(frame))} of study {study}"))
    finished = n_finished(final)
    console.print(
        f"Ran {ran} trial(s). Study {study} now holds {len(final.trials)} trials ({counts_line(counts)}); "
        f"{finished}/{trials} finished."
    )
    console.print("Leaderboard written to " + " and ".join(str(p) for p in paths))
    if interrupted:
        typer.echo(f"Interrupted: run the same command again to resume study {study}.", err=True)
        raise typer.Exit(130)
    if finished < trials:
        console.print(f"Run the same command again to reach {trials} finished trials.")


@app.command("leaderboard")
def leaderboard_cmd(
    study: StudyName = DEFAULT_STUDY,
    storage: Storage = None,
    top: Annotated[int | None, typer.Option(help="Show only the best K trials. [default: all]")] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    studies_dir: StudiesDir = Path("studies"),
) -> None:
    """Print an existing study's leaderboard without training anything."""
    if top is not None and top < 1:
        raise MnistBenchError(f"--top {top}: must be at least 1")
    optuna_study = load_study(study, open_storage(storage or default_storage(studies_dir), must_exist=True))
    frame = leaderboard(optuna_study, stored_space(optuna_study))
    if top is not None:
        frame = frame.head(top)
    if format is Format.table:
        console = _console()
        console.print(leaderboard_table(frame, title=f"Study {study}: {len(optuna_study.trials)} trials"))
    else:
        sys.stdout.write(export(frame, format.value))


def _runtime(precision: Precision, compile: bool, devices: Sequence[str]) -> Runtime:
    """The runtime options, checked against every device they will run on."""
    runtime = Runtime(precision=precision.value, compile=compile)
    try:
        for device in devices:
            runtime.check(resolve_device(device))
    except ValueError as exc:
        raise MnistBenchError(f"--precision {precision.value}: {exc}") from None
    return runtime


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise MnistBenchError(f"{name} {value}: must be at least 1")


def _train_and_save(
    config: TrainConfig,
    *,
    seeds: int,
    out_dir: Path,
    source: dict[str, object],
    data_dir: Path,
    device: str,
    no_verify: bool,
    runtime: Runtime,
) -> None:
    """Shared by `best --retrain` and `train`: all 60,000 training images, then the test set once."""
    seed_list = seeds_from(config.seed, seeds)
    data = TestData.load(data_dir, resolve_device(device), verify=not no_verify)
    console = _console()
    console.print(
        f"Training {config.model.layers} on all {len(data.train)} training images for {config.epochs} epoch(s), "
        f"{len(seed_list)} seed(s), on {data.device_data.device}..."
    )
    report = train_and_test(config, data.device_data, seed_list, runtime=runtime)
    paths = save_final(report, data, out_dir, source=source)
    first = report.runs[0]
    console.print(
        key_value_table(
            {
                f"test accuracy (seed {first.result.config.seed})": f"{first.evaluation.accuracy:.4f}",
                "train time": f"{first.result.train_time_s:.1f} s",
                "samples/s": f"{first.result.samples_per_s:,.0f}",
            },
            title="Final evaluation on the 10,000 test images",
        )
    )
    console.print(per_class_table(first.evaluation.per_class, title="Accuracy per digit"))
    console.print(
        confusion_table(first.evaluation.confusion, title="Confusion matrix (rows: true, columns: predicted)")
    )
    console.print(seeds_line(report.accuracies, report.mean, report.std))
    console.print("Saved " + ", ".join(str(p) for p in paths))


@app.command()
def best(
    study: StudyName = DEFAULT_STUDY,
    storage: Storage = None,
    trial: Annotated[int | None, typer.Option(help="Show (or retrain) this trial instead of the best.")] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Retrain on all 60,000 training images, test once, save a checkpoint.")
    ] = False,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs for --retrain. [default: as many as the trial ran]")
    ] = None,
    seeds: Seeds = 1,
    precision: PrecisionOpt = Precision.fp32,
    compile: CompileOpt = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = Path("studies"),
) -> None:
    """Show a study's best trial; with --retrain, turn it into a tested, saved model."""
    _positive("--epochs", epochs)
    _positive("--seeds", seeds)
    runtime = _runtime(precision, compile, [device])
    optuna_study = load_study(study, open_storage(storage or default_storage(studies_dir), must_exist=True))
    ranked = pick_trial(optuna_study, trial)
    config = trial_config(optuna_study, ranked.trial, epochs=epochs)
    attrs = ranked.trial.user_attrs
    console = _console()
    console.print(
        key_value_table(
            {
                "trial": ranked.trial.number,
                "rank": f"{ranked.rank} of {ranked.n_complete} complete trials",
                "layers": config.model.layers,
                "optimizer": describe(replace(config, epochs=attrs.get("epochs_run", config.epochs))),
                "validation accuracy": f"{ranked.trial.value:.4f} (best epoch {attrs.get('best_epoch', '?')})",
                "epochs run": attrs.get("epochs_run", "?"),
                "train time": f"{attrs.get('train_time_s', float('nan')):.1f} s",
                "samples/s": f"{attrs.get('samples_per_s', float('nan')):,.0f}",
                "parameters": f"{config.model.n_params:,}",
                "training seed": config.seed,
                "params": ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ranked.trial.params.items()
                ),
            },
            title=f"Study {study}: {'best trial' if trial is None else f'trial {trial}'}",
        )
    )
    if retrain:
        source = {
            "command": "best --retrain",
            "study": study,
            "trial": ranked.trial.number,
            "val_acc": ranked.trial.value,
        }
        out_dir = study_dir(studies_dir, study) / f"trial-{ranked.trial.number}"
        _train_and_save(
            config,
            seeds=seeds,
            out_dir=out_dir,
            source=source,
            data_dir=data_dir,
            device=device,
            no_verify=no_verify,
            runtime=runtime,
        )


@app.command("train")
def train_cmd(
    layers: Annotated[
        str, typer.Option(help="Architecture, e.g. 784-1024-1024-10 (or just the hidden widths, 1024-1024).")
    ],
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer.")] = Optimizer.adam,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    momentum: Annotated[float, typer.Option(help="Momentum (SGD only).")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step.")] = 128,
    epochs: Annotated[int, typer.Option(help="Passes over the 60,000 training images.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the (first) run: weight init and batch order.")] = 0,
    seeds: Seeds = 1,
    precision: PrecisionOpt = Precision.fp32,
    compile: CompileOpt = False,
    out: Annotated[
        Path | None, typer.Option(help="Output folder. [default: studies/train/<layers>-<optimizer>-...]")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = Path("studies"),
) -> None:
    """Train one configuration on all training images, test it, save checkpoint and figures."""
    _positive("--seeds", seeds)
    runtime = _runtime(precision, compile, [device])
    try:
        config = TrainConfig(
            ModelConfig.parse(layers), optimizer.value, lr, momentum, batch_size=batch_size, epochs=epochs, seed=seed
        )
    except ValueError as exc:
        raise MnistBenchError(str(exc)) from None
    name = f"{config.model.layers}-{config.optimizer}-lr{config.lr:g}-bs{config.batch_size}-e{config.epochs}-s{seed}"
    source: dict[str, object] = {"command": "train"}
    _train_and_save(
        config,
        seeds=seeds,
        out_dir=out or Path(studies_dir) / "train" / name,
        source=source,
        data_dir=data_dir,
        device=device,
        no_verify=no_verify,
        runtime=runtime,
    )


@app.command()
def baselines(
    seeds: Seeds = 3,
    study: Annotated[
        str | None, typer.Option("--study", help="Add a row for this study's best trial, retrained the same way.")
    ] = None,
    storage: Storage = None,
    out: Annotated[Path | None, typer.Option(help="Write the table here as CSV too.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = Path("studies"),
) -> None:
    """Train the five networks MNIST tutorials write by hand and compare with what they report."""
    _positive("--seeds", seeds)
    rows = list(BASELINES)
    if study is not None:
        optuna_study = load_study(study, open_storage(storage or default_storage(studies_dir), must_exist=True))
        ranked = pick_trial(optuna_study)
        config = trial_config(optuna_study, ranked.trial)
        rows.append(Baseline(f"{study} winner (trial {ranked.trial.number})", replace(config, seed=0), "-"))
    data = TestData.load(data_dir, resolve_device(device), verify=not no_verify)
    frame = run_baselines(rows, data.device_data, list(range(seeds)))
    console = _console()
    console.print(
        baselines_table(
            frame, title=f"Tutorial networks on the MNIST test set ({seeds} seed(s), {data.device_data.device})"
        )
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        console.print(f"Written to {out}")


@app.command()
def predict(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint folder or its checkpoint.json.")
    ],
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="PNG/JPEG files, any size or mode.")],
    background: Annotated[
        Background, typer.Option(help="Image background: dark (like MNIST), light (ink on paper) or auto-detect.")
    ] = Background.auto,
    top: Annotated[int, typer.Option(help="Most likely digits shown per image.")] = 3,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Classify image files with a saved checkpoint."""
    if not 1 <= top <= 10:
        raise MnistBenchError(f"--top {top}: must be between 1 and 10")
    loaded = checkpoint.load(checkpoint_path)
    rows = [p.to_dict() for p in predict_files(loaded.model, images, background=background.value, top=top)]
    if json_output:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        _console().print(predictions_table(rows))
    failed = [row["file"] for row in rows if "error" in row]
    if failed:
        typer.echo(
            f"Error: {len(failed)} of {len(rows)} image(s) could not be read: {', '.join(map(str, failed))}", err=True
        )
        raise typer.Exit(1)


@app.command("evaluate")
def evaluate_cmd(
    checkpoint_path: Annotated[
        Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint folder or its checkpoint.json.")
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    no_verify: NoVerify = False,
) -> None:
    """Re-score a checkpoint on the test set (on the CPU) and compare with the accuracy it stored."""
    loaded = checkpoint.load(checkpoint_path)
    data = TestData.load(data_dir, resolve_device("cpu"), verify=not no_verify)
    measured = evaluate(loaded.model, data.device_data.x_eval, data.device_data.y_eval).accuracy
    stored = loaded.meta.get("test", {}).get("accuracy")
    _console().print(f"{loaded.path}: test accuracy {measured:.4f} (stored {stored})")
    if stored is not None and measured != stored:
        raise MnistBenchError(f"measured test accuracy {measured} differs from the stored {stored}")


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
        list[int] | None, typer.Option("--workers", "-w", help="Concurrent search workers to time; repeat for more.")
    ] = None,
    section: Annotated[
        list[str] | None, typer.Option(help=f"Sections to run: {', '.join(SECTIONS)}. [default: all]")
    ] = None,
    repeats: Annotated[int | None, typer.Option(help="Timed repeats per figure (median reported).")] = None,
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
            _runtime(p, False, runtime_devices)  # asked for explicitly: refuse what the device lacks
        changes["precisions"] = tuple(p.value for p in precision)
    if no_compile:
        changes["compile"] = False
    if workers:
        changes["workers"] = tuple(workers)
    if repeats is not None:
        changes["repeats"] = repeats
    settings = replace(base, **changes)
    split = ensure_split(data_dir, "train", verify=not no_verify)
    console = _console()
    console.print(f"Benchmarking on {torch_device} ({'quick' if quick else 'full'} run)...")

    def search_runner(n: int) -> dict[str, Any]:
        return search_throughput(
            n,
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
        log=lambda line: console.print(f"[dim]{line}[/]"),
    )
    for name, frame in results.items():
        console.print(frame_table(frame, BENCH_COLUMNS[name], title=name))
    folder = out or Path(studies_dir) / "bench" / torch_device.type
    paths = write_results(results, folder, settings)
    console.print(f"Written to {folder}: " + ", ".join(p.name for p in paths))
