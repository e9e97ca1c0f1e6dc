"""Commands over a study once searched: promote, leaderboard and report."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from optuna.trial import FrozenTrial

from mnist_bench.cli.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_STUDIES_DIR,
    CompileOpt,
    DataDir,
    Device,
    Format,
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
    require_positive,
    runtime_from,
)
from mnist_bench.cli.search_command import MixedVersions, parallel_option
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.interrupt import sigint_as_event
from mnist_bench.output.console import (
    leaderboard_table,
    plural,
    promotion_line,
    promotion_table,
)
from mnist_bench.output.progress import TrialLines
from mnist_bench.output.report import write_comparison, write_study_report
from mnist_bench.search.leaderboard import leaderboard, leaderboard_text, study_dir
from mnist_bench.search.loop import stored_space
from mnist_bench.search.promote import long_settings, promote_trials
from mnist_bench.search.study import DEFAULT_STUDY, SearchSettings
from mnist_bench.storage.rdb import default_storage, load_study, open_storage, redact


@app.command()
def promote(
    study: StudyName = DEFAULT_STUDY,
    best: Annotated[int, typer.Option(help="How many of the study's best complete trials to train longer.")] = 4,
    epochs: Annotated[int, typer.Option(help="Epochs of each longer training (its own whole schedule).")] = 40,
    into: Annotated[
        str | None,
        typer.Option(help="Study that holds the longer trials.", show_default="STUDY-Nep, N the epochs"),
    ] = None,
    storage: Storage = None,
    seed: StudySeed = None,
    quiet: Quiet = False,
    parallel: Parallel = "1",
    mixed_versions: MixedVersions = False,
    precision: PrecisionOpt = Precision["fp32"],
    compile: CompileOpt = False,
    steps: StepsOpt = Steps["auto"],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
) -> None:
    """Train a study's best few trials longer, on the same validation split; rank them again.

    The second stage of a multi-fidelity search: short trials rank many recipes, the
    --best N are each trained for --epochs in study --into, and the table shows both ranks
    and their correlation. Retrain the winner with `best --study INTO --retrain`.
    """
    require_positive("--best", best)
    require_positive("--epochs", epochs)
    url = storage or default_storage(studies_dir)
    short = load_study(study, open_storage(url, must_exist=True))
    settings = SearchSettings(
        study=into or f"{study}-{epochs}ep", storage=url, trials=best, epochs=epochs, seed=seed,
        mixed_versions=mixed_versions,
    )  # fmt: skip
    settings = long_settings(short, settings, best)
    in_flight = min(parallel_option(parallel, device, stored_space(short)), best)
    runtime, in_flight = runtime_from(precision, compile, [device], steps=steps, parallel=in_flight)
    settings = replace(settings, runtime=runtime, parallel=in_flight)
    console = make_console()
    lines = TrialLines(console, quiet=quiet, source=study, epoch_lines=10)  # a long promotion is watched

    def on_start(chosen: list[FrozenTrial], where: object) -> None:
        numbers = ", ".join(str(t.number) for t in chosen)
        console.print(
            f"Promoting the best {plural(len(chosen), 'trial')} of study {study} ({numbers}) "
            f"to {epochs} epochs in study {settings.study}, on {where}."
        )

    try:
        with sigint_as_event() as stop:
            outcome = promote_trials(
                short, settings, data_dir=data_dir, verify=not no_verify, device=device, studies_dir=studies_dir,
                stop=stop, on_start=on_start, on_trial=lines.trial, on_epoch=lines.epoch, on_wait=lines.wait,
            )  # fmt: skip
    except KeyboardInterrupt:
        typer.echo(f"Interrupted: run the same command again to finish study {settings.study}.", err=True)
        raise typer.Exit(130) from None
    console.print(promotion_table(outcome.rows, short=study, long=settings.study, epochs=epochs))
    console.print(promotion_line(outcome.spearman, outcome.winner, long=settings.study))


@app.command("leaderboard")
def leaderboard_cmd(
    study: StudyName = DEFAULT_STUDY,
    storage: Storage = None,
    top: Annotated[int | None, typer.Option(help="Show only the best K trials.", show_default="all")] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
) -> None:
    """Print an existing study's leaderboard without training anything."""
    if top is not None and top < 1:
        raise UsageError(f"--top {top}: must be at least 1")
    optuna_study = load_study(study, open_storage(storage or default_storage(studies_dir), must_exist=True))
    frame = leaderboard(optuna_study, stored_space(optuna_study))
    if top is not None:
        frame = frame.head(top)
    if format is Format.table:
        console = make_console()
        console.print(leaderboard_table(frame, title=f"Study {study}: {len(optuna_study.trials)} trials"))
    else:
        sys.stdout.write(leaderboard_text(frame, format.value))


@app.command()
def report(
    study: Annotated[
        list[str] | None,
        typer.Option(
            "--study", help="Study to report; repeat to compare several side by side.", show_default=DEFAULT_STUDY
        ),
    ] = None,
    storage: Storage = None,
    target_acc: Annotated[float, typer.Option(help="Accuracy whose time-to-reach the comparison reports.")] = 0.98,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Report folder.", show_default="STUDIES_DIR/STUDY/report; STUDIES_DIR/A-vs-B/report for several"
        ),
    ] = None,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
) -> None:
    """Write PNG figures and a self-contained HTML page for a study, or compare studies."""
    names = study or [DEFAULT_STUDY]
    url = storage or default_storage(studies_dir)
    optuna_storage = open_storage(url, must_exist=True)
    studies = [load_study(name, optuna_storage) for name in names]
    folder = out or study_dir(studies_dir, "-vs-".join(names)) / "report"
    try:
        if len(studies) == 1:
            models = study_dir(studies_dir, names[0])
            result = write_study_report(studies[0], folder, storage_url=redact(url), models_dir=models)
        else:
            result = write_comparison(studies, folder, target=target_acc)
    except OSError as exc:
        raise MnistBenchError(f"cannot write the report to {folder}: {exc.strerror or exc}") from None
    console = make_console()
    for name, why in result.missing.items():
        console.print(f"[yellow]{name} left out: {why}[/]")
    console.print(
        f"Report written to {result.html} with {len(result.figures)} figure(s): {', '.join(result.figures)}"
        + (f"; {len(result.interactive)} interactive: {', '.join(result.interactive)}" if result.interactive else "")
    )
    if result.demo is not None:
        console.print(f"Draw-a-digit page: {result.demo}")
