"""``mnist-bench speedrun``: how long a fixed recipe takes to reach a test accuracy here; and
``mnist-bench recipes``, the recipes that ship.

Imports nothing of the search (Optuna, pandas, SQLAlchemy): its start-up counts in the
wall time it reports.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from mnist_bench.artifacts.final import FinalData
from mnist_bench.cli.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_STUDIES_DIR,
    DataDir,
    Device,
    NoVerify,
    Precision,
    Steps,
    StepsOpt,
    Storage,
    StudiesDir,
    app,
    exit_promptly,
    make_console,
    require_positive,
    runtime_from,
)
from mnist_bench.config import Runtime
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.interrupt import sigint_as_event
from mnist_bench.measure.selfcheck import cache_dir
from mnist_bench.output.speedrun import recipe_line, recipes_table, run_line, runs_table, summary_lines, wall_line
from mnist_bench.speedrun.recipe import (
    DEFAULT_TARGET,
    TARGET_CHOICES,
    Recipe,
    find_recipe,
    parse_target,
    recipe_for,
    shipped_recipes,
)
from mnist_bench.speedrun.run import Stopwatch, run_speedrun
from mnist_bench.training.device import device_name, resolve_device

TargetOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Test accuracy in percent the mean over the runs must reach: {TARGET_CHOICES}. Picks the shipped "
        "recipe for it and the device.",
        show_default=f"{DEFAULT_TARGET:g}; with --recipe, the recipe's",
    ),
]

RunsOpt = Annotated[int, typer.Option(help="Trainings from fresh weights, one per seed; their mean is judged.")]

FirstSeedOpt = Annotated[int, typer.Option(help="Seed of the first run; the others take the next ones.")]

RecipeOpt = Annotated[
    str | None,
    typer.Option(
        help="A shipped recipe's name (`mnist-bench recipes`), e.g. to run another device's on purpose, or the "
        "path of a recipe file of your own, NAME.json.",
        show_default="the shipped one for --target and the device",
    ),
]

JsonOpt = Annotated[
    Path | None,
    typer.Option(
        "--json", help="Also write the runs, figures, recipe, machine and versions here.", show_default="no file"
    ),
]

StudyOpt = Annotated[
    str | None,
    typer.Option(
        help="Run a trial of this study as the recipe (an accuracy-and-time search's, say): its own config, "
        "epochs and precision.",
        show_default="no study",
    ),
]

TrialOpt = Annotated[int | None, typer.Option(help="With --study: the trial to run.", show_default="the study's best")]

SaveRecipeOpt = Annotated[
    Path | None,
    typer.Option(
        help="Write the recipe run, with its provenance (the search, this command, the machine and these "
        "runs' figures), to this JSON file, named by its stem: how a shipped recipe is made.",
        show_default="no file",
    ),
]


@app.command()
def speedrun(
    target: TargetOpt = None,
    runs: RunsOpt = 5,
    seed: FirstSeedOpt = 0,
    recipe: RecipeOpt = None,
    json_out: JsonOpt = None,
    study: StudyOpt = None,
    trial: TrialOpt = None,
    save_recipe: SaveRecipeOpt = None,
    storage: Storage = None,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
    steps: StepsOpt = Steps["auto"],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
) -> None:
    """Time a fixed recipe to a test accuracy on this machine: the mean over seeded runs must reach it.

    Each run trains from fresh weights, is timed from its first step to its last, and is
    tested once, after. Exits 0 whether or not the target is reached: the verdict line says
    which."""
    stopwatch = Stopwatch.start()
    require_positive("--runs", runs)
    goal = None if target is None else parse_target(target)
    on = resolve_device(device)
    chosen, found_by = _chosen_recipe(recipe, study, trial, goal, on.type, storage=storage, studies_dir=studies_dir)
    try:
        Runtime(precision=chosen.precision).check(on)
    except ValueError as exc:
        raise MnistBenchError(f"recipe {chosen.name}: {exc}") from None
    runtime, _ = runtime_from(Precision[chosen.precision], False, [device], steps=steps)
    # All 60,000 training images and the 10,000 test images, on the device once for every run.
    data = FinalData.load(data_dir, on, verify=not no_verify, cache=cache_dir() / "idx").device_data
    console = make_console()
    console.print(recipe_line(chosen, str(data.device), device_name(data.device)), markup=False)
    seeds = [seed + i for i in range(runs)]
    with sigint_as_event() as stop:
        result = run_speedrun(
            chosen,
            data,
            seeds,
            target=chosen.target if goal is None else goal,
            runtime=runtime,
            stop=stop,
            on_run=lambda run: console.print(run_line(run, seeds.index(run.seed) + 1, runs), markup=False),
        )
    if result.runs:
        console.print(runs_table(result.runs, title=f"Speedrun of {chosen.name} on {data.device}"))
        for line in summary_lines(result):
            console.print(line, markup=False)
    wall_s = stopwatch.seconds()
    console.print(wall_line(wall_s, stopwatch.since), markup=False)
    if result.interrupted:
        typer.echo(f"Interrupted after {len(result.runs)} of {runs} runs: no verdict.", err=True)
        raise typer.Exit(130)
    if json_out is not None:
        _write_json(json_out, result.to_dict(wall_s=wall_s, wall_from=stopwatch.since))
        console.print(f"Written to {json_out}", markup=False)
    if save_recipe is not None:
        selection = f"mnist-bench speedrun {_selection_options(recipe, study, trial, chosen.target)} --runs {runs}"
        made = replace(
            chosen, name=save_recipe.stem, provenance=result.provenance(search=found_by, selection=selection)
        )
        _write_json(save_recipe, made.to_dict())
        console.print(f"Recipe written to {save_recipe}", markup=False)
    exit_promptly()  # its wall time is the product: no torch teardown after it


def _chosen_recipe(
    recipe: str | None,
    study: str | None,
    trial: int | None,
    goal: float | None,
    device_kind: str,
    *,
    storage: str | None,
    studies_dir: Path,
) -> tuple[Recipe, str]:
    """The recipe to run, and the search that found it (for a recipe it writes)."""
    if study is None:
        if trial is not None:
            raise UsageError("--trial: picks a trial of --study, which is not given")
        chosen = find_recipe(recipe) if recipe is not None else recipe_for(goal or DEFAULT_TARGET, device_kind)
        return chosen, chosen.provenance.search if chosen.provenance is not None else "not recorded"
    if recipe is not None:
        raise UsageError("--recipe and --study: run a recipe, or a study's trial as one, not both")
    # Only here: a speedrun of a shipped recipe imports nothing of the search (Optuna, SQLAlchemy).
    from mnist_bench.search.recipes import search_command, trial_recipe  # noqa: PLC0415
    from mnist_bench.storage.rdb import default_storage, load_study, open_storage  # noqa: PLC0415

    stored = load_study(study, open_storage(storage or default_storage(studies_dir), must_exist=True))
    return trial_recipe(stored, trial, target=goal or DEFAULT_TARGET, device_kind=device_kind), search_command(stored)


def _selection_options(recipe: str | None, study: str | None, trial: int | None, target: float) -> str:
    if study is not None:
        return f"--study {study}" + ("" if trial is None else f" --trial {trial}") + f" --target {target:g}"
    return f"--recipe {recipe}" if recipe is not None else f"--target {target:g}"


def _write_json(path: Path, values: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2) + "\n")
    except OSError as exc:
        raise MnistBenchError(f"cannot write {path}: {exc.strerror or exc}") from None


@app.command()
def recipes() -> None:
    """List the speedrun recipes that ship with the package: pass a name to `speedrun --recipe`."""
    console = make_console()
    shipped = shipped_recipes()
    if shipped:
        console.print(recipes_table(shipped.values()))
    else:
        console.print("No speedrun recipes ship with this version yet.", markup=False)
    console.print(
        "`speedrun --target T` runs the one for T and this device; `--recipe NAME` runs any of them, "
        "`--recipe FILE.json` a recipe of your own (docs/guide.md, speedrun).",
        markup=False,
    )
