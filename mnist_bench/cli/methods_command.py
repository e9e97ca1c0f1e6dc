"""The methods command: search methods against each other, ``measure.methods.run_methods``, a table out."""

from __future__ import annotations

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
from mnist_bench.cli.search_command import SpaceName, ValSize
from mnist_bench.interrupt import sigint_as_event
from mnist_bench.measure.methods import MethodsSettings, parse_methods, run_methods, write_methods
from mnist_bench.output.console import plural
from mnist_bench.output.methods import anytime_table, methods_table, repeat_line
from mnist_bench.search.space import load_space
from mnist_bench.training.device import resolve_device

# The default search (tpe+median) against finer judgement (asha at 3 reports an epoch), a
# sampler that models the whole space (gp), and the baseline every search must beat (random).
FULL_METHODS = "tpe+median,tpe+asha@3,gp+asha@3,random+median"
QUICK_METHODS = "tpe+median,tpe+asha@3"
_FULL, _QUICK = MethodsSettings(parse_methods(FULL_METHODS)), MethodsSettings.quick(parse_methods(QUICK_METHODS))


def _either(name: str) -> str:
    """A setting's default as --help shows it: the full run's, and --quick's where it differs."""
    full, quick = getattr(_FULL, name), getattr(_QUICK, name)
    return str(full) if full == quick else f"{full}; --quick {quick}"


def methods_option(value: str | None) -> str | None:
    """``--methods`` checked against the sampler and pruner registries; a bad one is a usage error (exit 2)."""
    if value is not None:
        try:
            parse_methods(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


Methods = Annotated[
    str | None,
    typer.Option(
        callback=methods_option,
        help="Methods to compare, comma-separated, each a sampler and a pruner as SAMPLER+PRUNER "
        "(the choices of `search --sampler` and `search --pruner`), with @N for N reports an epoch "
        "(`search --reports-per-epoch`): tpe+asha@3.",
        show_default=f"{FULL_METHODS}; --quick {QUICK_METHODS}",
    ),
]
Restart = Annotated[
    bool,
    typer.Option(
        "--restart",
        help="Forget the searches an earlier run left in --out and time every one again "
        "(without it, a search an earlier run finished is read back, an unfinished one run again).",
    ),
]
Quick = Annotated[bool, typer.Option("--quick", help="A short run (few repeats of short searches) for two CPU cores.")]
Repeats = Annotated[
    int | None,
    typer.Option(
        min=1, help="Seeded searches per method (seeds --seed, --seed + 1, ...).", show_default=_either("repeats")
    ),
]
RepeatTrials = Annotated[
    int | None, typer.Option(min=1, help="Finished trials per search.", show_default=_either("trials"))
]
RepeatEpochs = Annotated[
    int | None, typer.Option(min=1, help="Most epochs one trial may train.", show_default=_either("epochs"))
]
BaseSeed = Annotated[int, typer.Option(help="Seed of every method's first search; the next ones count up from it.")]
MethodsOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Output folder: curves.csv, summary.json, anytime.png and the searches' studies (methods.db); "
        "a rerun replaces them.",
        show_default="STUDIES_DIR/methods",
    ),
]


@app.command()
def methods(
    methods: Methods = None,
    quick: Quick = False,
    repeats: Repeats = None,
    trials: RepeatTrials = None,
    epochs: RepeatEpochs = None,
    space: SpaceName = "default",
    seed: BaseSeed = 0,
    val_size: ValSize = 5000,
    out: MethodsOut = None,
    steps: StepsOpt = Steps["auto"],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
    restart: Restart = False,
) -> None:
    """Compare search methods by their anytime curves: best accuracy so far against seconds, over seeded repeats."""
    base = _QUICK if quick else _FULL
    chosen = {"repeats": repeats, "trials": trials, "epochs": epochs}
    runtime, _ = runtime_from(Precision["fp32"], False, [device], steps=steps)
    settings = MethodsSettings(
        parse_methods(methods) if methods else base.methods,
        **{name: getattr(base, name) if value is None else value for name, value in chosen.items()},
        seed=seed, val_size=val_size, runtime=runtime,
    )  # fmt: skip
    search_space = load_space(space)
    folder = out or Path(studies_dir) / "methods"
    console = make_console()
    console.print(
        f"Comparing {', '.join(m.name for m in settings.methods)}: {plural(settings.repeats, 'seeded repeat')} "
        f"each, searches of {plural(settings.trials, 'trial')} of at most {plural(settings.epochs, 'epoch')}, "
        f"one at a time on {resolve_device(device)}...",
        markup=False,
    )
    with sigint_as_event() as stop:
        try:
            result = run_methods(
                settings, search_space, data_dir=data_dir, verify=not no_verify, device=device, out=folder,
                restart=restart, stop=stop, on_repeat=lambda repeat, kept: console.print(
                    repeat_line(repeat) + (" (finished by an earlier run: read back)" if kept else ""), markup=False
                ),
            )  # fmt: skip
        except KeyboardInterrupt:
            typer.echo(
                f"Interrupted: the searches it finished are summarized in {folder}; "
                "the same command goes on from there.",
                err=True,
            )
            raise typer.Exit(130) from None
    console.print(methods_table(result))
    if (anytime := anytime_table(result)) is not None:
        console.print(anytime)
    paths = write_methods(result, folder)
    console.print(f"Written to {folder}: " + ", ".join(p.name for p in paths), markup=False)
    console.print(
        f"Each search is a study in {result.storage}: `mnist-bench report --storage {result.storage} "
        f"--study {result.repeats[0].study} --study ...` draws some side by side.",
        markup=False,
    )
