"""Which commands train, and so go through the GPU self-check and take --steps.

Every command that trains (graphed steps, or trainings in flight, on CUDA) must reach the
self-check before it trains and must take ``--steps``; a command that trains nothing must
never start the check (on a fresh GPU machine it can take minutes). Each command runs
here on tiny real files, on the CPU, with the check's entry point recording its calls.
A command added to the CLI and not listed here fails the last test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from mnist_bench.cli import app, common
from mnist_bench.data import load_split

runner = CliRunner()
# The command, as a user runs it; whether it trains. doctor is the check itself.
COMMANDS: dict[str, tuple[list[str], bool]] = {
    "search": (["search", "--trials", "1", "--epochs", "1", "--val-size", "100", "--space", "{space}"], True),
    "promote": (["promote", "--best", "1", "--epochs", "1"], True),
    "best": (["best"], False),
    "best --retrain": (["best", "--retrain", "--epochs", "1"], True),
    "train": (["train", "--layers", "16", "--epochs", "1", "--out", "{tmp}/t"], True),
    "baselines": (["baselines", "--seeds", "1"], True),
    "bench": (["bench", "--quick", "--section", "floor", "--out", "{tmp}/bench"], True),
    "methods": (
        [
            "methods",
            "--methods",
            "random+none",
            "--repeats",
            "1",
            "--trials",
            "1",
            "--epochs",
            "1",
            "--val-size",
            "100",
            "--space",
            "{space}",
        ],
        True,
    ),
    "speedrun": (["speedrun", "--recipe", "{tmp}/recipe.json", "--runs", "1"], True),
    "recipes": (["recipes"], False),
    "leaderboard": (["leaderboard"], False),
    "report": (["report"], False),
    "spaces": (["spaces"], False),
    "deformations": (["deformations", "--count", "2", "--variants", "1", "--out", "{tmp}/d.png"], False),
    "evaluate": (["evaluate", "{tmp}/t"], False),
    "predict": (["predict", "{tmp}/t", "{tmp}/digit.png"], False),
    "demo": (["demo", "{tmp}/t"], False),
    "export": (["export", "{tmp}/t"], False),
}
# The options each command takes that say where things are: added where it has them.
WHERE = {"--studies-dir": "{tmp}/studies", "--data-dir": "{data}", "--device": "cpu"}


def options_of(name: str) -> set[str]:
    command = typer.main.get_command(app).commands[name.split()[0]]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


def test_each_command_that_trains_goes_through_the_self_check(tmp_path: Path, tiny_mnist: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    calls: list[str] = []
    real = common.trusted

    def recorded(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(current)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(common, "trusted", recorded)
    (tmp_path / "space.toml").write_text("depth = [1, 1]\nwidth = [16, 16]\nbatch_sizes = [64]\n")
    config = {"hidden": [16], "optimizer": "sgd", "lr": 0.1, "epochs": 1}
    (tmp_path / "recipe.json").write_text(json.dumps({"name": "r", "target": 97, "device": "cpu", "config": config}))
    image = load_split(tiny_mnist, "test", verify=False).images[0].numpy()
    Image.fromarray(image).save(tmp_path / "digit.png")
    fill = {"{tmp}": str(tmp_path), "{data}": str(tiny_mnist), "{space}": str(tmp_path / "space.toml")}
    for current, (args, trains) in COMMANDS.items():
        where = [x for opt, value in WHERE.items() if opt in options_of(current) for x in (opt, value)]
        if "--no-verify" in options_of(current):
            where.append("--no-verify")
        filled = [_fill(a, fill) for a in [*args, *where]]
        result = runner.invoke(app, filled)
        assert result.exit_code == 0, f"{current}: {result.output}"
        assert (current in calls) == trains, f"{current}: self-check {'not ' if trains else ''}reached"
        trains_at_all = any(t for name, (_, t) in COMMANDS.items() if name.split()[0] == current.split()[0])
        assert ("--steps" in options_of(current)) == trains_at_all, f"{current}: --steps"


def _fill(arg: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        arg = arg.replace(key, value)
    return arg


def test_every_command_is_listed() -> None:
    names = {name.split()[0] for name in COMMANDS} | {"doctor"}
    assert set(typer.main.get_command(app).commands) == names  # type: ignore[attr-defined]


def test_each_command_is_found_in_the_module_the_app_imports_for_it() -> None:
    """The app imports a command's module (common.COMMANDS) only when the command runs or is
    listed: a command another module defines, or one left out of the table, would go missing."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name, module in common.COMMANDS.items():
        assert commands[name].callback.__module__ == f"mnist_bench.cli.{module}", name
    assert len(typer.main.get_command(app).commands) == len(common.COMMANDS)  # type: ignore[attr-defined]
