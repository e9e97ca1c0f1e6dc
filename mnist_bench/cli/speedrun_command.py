"""``mnist-bench speedrun``: how long a fixed recipe takes to reach a test accuracy here; and
``mnist-bench recipes``, the recipes that ship.

Imports nothing of the search (Optuna, pandas, SQLAlchemy): its start-up counts in the
wall time it reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mnist_bench.artifacts.final import FinalData
from mnist_bench.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    Device,
    NoVerify,
    Precision,
    Steps,
    StepsOpt,
    app,
    exit_promptly,
    make_console,
    require_positive,
    runtime_from,
)
from mnist_bench.config import Runtime
from mnist_bench.errors import MnistBenchError
from mnist_bench.interrupt import sigint_as_event
from mnist_bench.measure.selfcheck import cache_dir
from mnist_bench.output.speedrun import recipe_line, recipes_table, run_line, runs_table, summary_lines, wall_line
from mnist_bench.speedrun.recipe import (
    DEFAULT_TARGET,
    TARGET_CHOICES,
    find_recipe,
    parse_target,
    recipe_for,
    shipped_recipes,
)
from mnist_bench.speedrun.run import Stopwatch, run_speedrun
from mnist_bench.training.device import device_name, resolve_device


@app.command()
def speedrun(
    target: Annotated[
        str | None,
        typer.Option(
            help=f"Test accuracy in percent the mean over the runs must reach: {TARGET_CHOICES}. Picks the shipped "
            "recipe for it and the device.",
            show_default=f"{DEFAULT_TARGET:g}; with --recipe, the recipe's",
        ),
    ] = None,
    runs: Annotated[int, typer.Option(help="Trainings from fresh weights, one per seed; their mean is judged.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the first run; the others take the next ones.")] = 0,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="A shipped recipe's name (`mnist-bench recipes`), e.g. to run another device's on purpose, or the "
            "path of a recipe file of your own, NAME.json.",
            show_default="the shipped one for --target and the device",
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Also write the runs, figures, recipe, machine and versions here.", show_default="no file"
        ),
    ] = None,
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
    chosen = (
        find_recipe(recipe) if recipe is not None else recipe_for(DEFAULT_TARGET if goal is None else goal, on.type)
    )
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
        try:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result.to_dict(wall_s=wall_s, wall_from=stopwatch.since), indent=2) + "\n")
        except OSError as exc:
            raise MnistBenchError(f"cannot write {json_out}: {exc.strerror or exc}") from None
        console.print(f"Written to {json_out}", markup=False)
    exit_promptly()  # its wall time is the product: no torch teardown after it


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
