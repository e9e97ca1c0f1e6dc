"""What every command shares: the Typer app, its one-line errors, option types, helpers.

Kept light (torch, typer and rich, no Optuna, pandas or search modules): every command
imports it, and ``speedrun`` must start fast. A command's own module imports what it
alone needs, and is imported only when that command runs or is listed (``COMMANDS``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from mnist_bench import __version__
from mnist_bench.augment import AUGMENTS, DEFAULT_DEFORM, Deform, parse_deform
from mnist_bench.config import PRECISIONS, STEPS, Runtime, steps_spec
from mnist_bench.data import default_data_dir
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.measure.selfcheck import trusted
from mnist_bench.optimizers import OPTIMIZERS
from mnist_bench.schedules import SCHEDULES
from mnist_bench.training.device import resolve_device
from mnist_bench.training.lanes import check_parallel

# Every command and the module of mnist_bench.cli that defines it, in the order of
# `mnist-bench --help` (the main job first, then what follows from it). A module is
# imported when one of its commands runs or is listed, so that a command pays for its own
# imports only: `speedrun` never loads Optuna, SQLAlchemy, pandas or the search modules.
COMMANDS = {
    "search": "search_command", "spaces": "space_command", "promote": "study_commands",
    "leaderboard": "study_commands", "report": "study_commands", "best": "model_commands",
    "train": "model_commands", "baselines": "model_commands", "deformations": "model_commands",
    "speedrun": "speedrun_command", "recipes": "speedrun_command", "predict": "checkpoint_commands",
    "evaluate": "checkpoint_commands", "demo": "checkpoint_commands", "export": "checkpoint_commands",
    "bench": "bench_command", "methods": "methods_command", "doctor": "doctor_command",
}  # fmt: skip
# Commands that never open a study: the app's callback leaves Optuna unimported for them.
WITHOUT_OPTUNA = frozenset({"speedrun", "recipes"})


class _LazyCommands(MutableMapping[str, Any]):
    """A group's commands by name (``COMMANDS``), each module imported at its first lookup."""

    def __init__(self, loaded: MutableMapping[str, Any]) -> None:
        self._loaded = dict(loaded)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded and name in COMMANDS:
            importlib.import_module(f"mnist_bench.cli.{COMMANDS[name]}")  # registers its commands on app
            built = typer.main.get_command(app)  # the group again, with them
            assert isinstance(built, _OneLineErrors) and isinstance(built.commands, _LazyCommands)
            for known, command in built.commands._loaded.items():
                self._loaded.setdefault(known, command)
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:  # without importing anything
        return name in COMMANDS or name in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]


class _OneLineErrors(TyperGroup):
    """Every error a user can cause ends as one 'Error: ...' line and a non-zero exit."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMANDS)}
        return sorted(self.commands, key=lambda name: rank.get(name, len(rank)))  # names: nothing imported

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
            sys.exit(2 if isinstance(exc, UsageError) else 1)
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


# Set by the console script (``cli.main``), never by a test's CliRunner: a command whose own
# wall time is what it reports (speedrun) may then end the process at once (``exit_promptly``).
_PROMPT_EXIT = {"allowed": False}


def exit_promptly() -> None:
    """End the process now, its output flushed, without the interpreter's teardown.

    Tearing torch down (its atexit hooks, the collection of every module) takes 0.4-0.8 s
    on two cores: more than a fast speedrun's training. Only after all files are closed,
    and only in the console script's process; under a test it returns.
    """
    if _PROMPT_EXIT["allowed"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


app = typer.Typer(
    cls=_OneLineErrors,
    help="Find, measure and reproduce the best multilayer perceptron for MNIST.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Background(StrEnum):
    auto = "auto"
    dark = "dark"
    light = "light"


# The choices of a registry, as Typer reads them: written from the registries, never by hand
# (the search's samplers, pruners and objectives in search_command, which alone imports them).
Optimizer = StrEnum("Optimizer", [(name, name) for name in OPTIMIZERS])  # type: ignore[misc]
Schedule = StrEnum("Schedule", [(name, name) for name in SCHEDULES])  # type: ignore[misc]
Augment = StrEnum("Augment", [(name, name) for name in AUGMENTS])  # type: ignore[misc]
Precision = StrEnum("Precision", [(name, name) for name in PRECISIONS])  # type: ignore[misc]
Steps = StrEnum("Steps", [(name, name) for name in STEPS])  # type: ignore[misc]
# What help texts say of the choices, from the registries too.
AUGMENT_CHOICES = "; ".join(f"{spec.name} ({spec.description})" for spec in AUGMENTS.values())
PRECISION_CHOICES = "; ".join(f"{spec.name} ({spec.help})" for spec in PRECISIONS.values())
STEPS_CHOICES = "; ".join(f"{spec.name} ({spec.help})" for spec in STEPS.values())
MOMENTUM_TAKERS = ", ".join(spec.name for spec in OPTIMIZERS.values() if spec.momentum)
WEIGHT_DECAYS = "; ".join(f"{spec.name}: {spec.weight_decay}" for spec in OPTIMIZERS.values() if spec.weight_decay)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    markdown = "markdown"
    json = "json"


DEFAULT_DATA_DIR = default_data_dir()
DEFAULT_STUDIES_DIR = Path("studies")
StudiesDir = Annotated[
    Path,
    typer.Option(
        envvar="MNIST_BENCH_STUDIES",
        help="Folder for the default SQLite storage and each study's outputs.",
    ),
]
StudyName = Annotated[str, typer.Option("--study", help="Study name in the storage.")]
Storage = Annotated[
    str | None,
    typer.Option(
        # From the environment too, so a database password need not sit on a command line.
        envvar="MNIST_BENCH_STORAGE",
        help="Optuna storage URL: sqlite:///..., postgresql+psycopg://..., mysql+pymysql://...",
        show_default="SQLite in --studies-dir",
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
AugmentOpt = Annotated[
    Augment | None,
    typer.Option(
        help="Training-time augmentation on the device: " + AUGMENT_CHOICES + " (search: fixes the space's choice).",
        show_default="none; for best, the trial's; for search, the space's",
    ),
]
PrecisionOpt = Annotated[Precision, typer.Option(help="Matmul precision: " + PRECISION_CHOICES + ".")]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="torch.compile the model (CUDA graphs on CUDA); eager otherwise.")
]
CheckpointPath = Annotated[
    Path,
    typer.Argument(metavar="CHECKPOINT", help="A checkpoint: its folder, its checkpoint.json or its model.pt."),
]
DeformOpt = Annotated[
    str | None,
    typer.Option(
        help="Deformation strengths for --augment affine/elastic, e.g. rotate_deg=15,scale=0.15,shear_deg=15,"
        "shift_px=2,elastic_alpha_px=6,elastic_sigma_px=5 (names as in a space file; unnamed ones keep "
        "their values). Check them by eye with `mnist-bench deformations`.",
        show_default=",".join(f"{name}={value:g}" for name, value in vars(DEFAULT_DEFORM).items())
        + "; for best, the trial's",
    ),
]


def deform_from(spec: str | None, base: Deform = DEFAULT_DEFORM) -> Deform:
    if spec is None:
        return base
    try:
        return parse_deform(spec, base)
    except ValueError as exc:
        raise UsageError(f"--deform {spec}: {exc}") from None


RestartOpt = Annotated[
    bool,
    typer.Option(
        "--restart", help="Train from scratch even if an interrupted run of this output folder left a state to resume."
    ),
]


StepsOpt = Annotated[
    Steps, typer.Option(help="How steps run on a CUDA GPU: " + STEPS_CHOICES + ". The CPU always runs eagerly.")
]
StudySeed = Annotated[
    int | None,
    typer.Option(
        help="Seed of the study: its sampler and every new trial's training seed (promoted trials keep theirs); "
        "the same seed repeats the study on the same machine.",
        show_default="unseeded",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No per-trial lines or progress bar.")]
Parallel = Annotated[
    str,
    typer.Option(
        help="Trials in flight side by side in each process, each with its own model, optimizer and "
        "CUDA stream, one epoch per round (deterministic with --seed); auto: 1 on a CPU, on a GPU as many "
        "as free memory allows (at most 16)."
    ),
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
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    if ctx.invoked_subcommand in WITHOUT_OPTUNA:
        return
    import optuna  # noqa: PLC0415  (the commands that use it have imported it already)

    # The CLI prints its own line per trial, with the reason a trial failed; Optuna's log
    # would repeat it (with a traceback for a Ctrl-C).
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def make_console() -> Console:
    # A pipe or file gets wide lines rather than an 80-column table squeezed to ellipses.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def runtime_from(
    precision: Precision,
    compile: bool,
    devices: Sequence[str],
    *,
    steps: Steps = Steps["auto"],
    parallel: int = 1,
    check: bool = True,
) -> tuple[Runtime, int]:
    """The runtime options and trainings in flight, checked against every device they will
    run on, and cut back to what each device's self-check trusts (``selfcheck``).
    ``check=False``: the command trains nothing this time, so no self-check starts."""
    runtime = Runtime(precision=precision.value, compile=compile, graphs=steps_spec(steps.value).graphs)
    check_parallel(runtime, parallel)
    try:
        for device in devices:
            runtime.check(resolve_device(device))
    except ValueError as exc:
        raise MnistBenchError(f"--precision {precision.value}: {exc}") from None
    for device in dict.fromkeys(devices) if check else ():
        runtime, parallel = trusted(
            resolve_device(device), runtime, parallel, steps=steps.value, say=lambda line: typer.echo(line, err=True)
        )
    return runtime, parallel


def require_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{name} {value}: must be at least 1")


def study_options(storage: str | None, studies_dir: Path) -> str:
    """The options that find a study again, as a printed command needs them: the storage
    given (its password hidden), or a studies folder other than the default; "" for neither."""
    if storage is not None:
        from mnist_bench.storage.rdb import redact  # noqa: PLC0415  (SQLAlchemy: only for a search's commands)

        return f" --storage {redact(storage)}"
    return "" if studies_dir == DEFAULT_STUDIES_DIR else f" --studies-dir {studies_dir}"
