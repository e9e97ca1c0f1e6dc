"""The ``mnist-bench`` command line: options in, one library call, rendered output out."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from mnist_bench import __version__
from mnist_bench.data import DeviceData, default_data_dir, ensure_split
from mnist_bench.device import resolve_device
from mnist_bench.errors import MnistBenchError
from mnist_bench.leaderboard import export, leaderboard, study_dir, trial_row, write_leaderboard
from mnist_bench.render import counts_line, leaderboard_table, trial_line
from mnist_bench.search import (
    DEFAULT_STUDY,
    SearchSettings,
    default_storage,
    load_study,
    n_finished,
    open_storage,
    open_study,
    run_search,
    stored_space,
)
from mnist_bench.space import load_space


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
        help="Optuna storage URL (sqlite:///..., postgresql://..., mysql://...); unset: SQLite in --studies-dir."
    ),
]
DataDir = Annotated[
    Path,
    typer.Option(envvar="MNIST_BENCH_DATA", help="Folder holding MNIST/raw/*-ubyte[.gz]; downloaded there if absent."),
]
Device = Annotated[str, typer.Option(help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N.")]
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
    import optuna  # noqa: PLC0415

    # The CLI prints its own line per trial; Optuna's INFO log would repeat it.
    optuna.logging.set_verbosity(optuna.logging.WARNING)


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
    )
    search_space = load_space(space, studies_dir)
    # Open the storage and check the study before the (slower) data load.
    optuna_study = open_study(settings, search_space, open_storage(settings.storage))
    torch_device = resolve_device(device)
    train_split = ensure_split(data_dir, "train", verify=not no_verify)
    data = DeviceData.with_validation(train_split, torch_device, val_size=val_size)

    console = _console()
    before = len(optuna_study.trials)
    console.print(
        f"Study [bold]{study}[/] in {settings.storage}: {before} trial(s) so far; "
        f"target {trials} finished; training on {torch_device}, {epochs} epoch(s) max."
    )
    live = console.is_terminal and not quiet
    progress = Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not live,
        transient=True,
    )

    def on_trial(s: Any, frozen: Any) -> None:
        try:
            best = s.best_value
        except ValueError:
            best = None
        if not quiet:
            console.print(trial_line(trial_row(frozen, search_space), best), markup=False)
        progress.update(task, advance=1, best=f"best {best:.4f}" if best is not None else "")

    with progress:
        task = progress.add_task("search", total=max(trials - n_finished(optuna_study), 0), best="")
        outcome = run_search(settings, search_space, data, on_trial=on_trial, study=optuna_study)

    frame = leaderboard(outcome.study, search_space)
    paths = write_leaderboard(frame, study_dir(studies_dir, study))
    console.print(leaderboard_table(frame, top=top, title=f"Top {min(top, len(frame))} of study {study}"))
    console.print(
        f"Ran {outcome.ran} trial(s). Study {study} now holds {len(outcome.study.trials)} trials "
        f"({counts_line(outcome.counts)}); {outcome.finished}/{outcome.target} finished."
    )
    if outcome.finished < outcome.target:
        console.print(f"Run the same command again to reach {outcome.target} finished trials.")
    console.print("Leaderboard written to " + " and ".join(str(p) for p in paths))


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
