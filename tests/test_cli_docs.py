from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from mnist_bench.cli import app
from mnist_bench.cli.common import DEFAULT_DATA_DIR
from mnist_bench.cli.docs import REGENERATE, main, render
from tests.conftest import REPO


def test_docs_cli_md_is_the_reference_the_commands_write_now(tmp_path: Path) -> None:
    fresh = tmp_path / "cli.md"
    main([str(fresh)])
    committed = REPO / "docs" / "cli.md"
    assert committed.is_file(), f"docs/cli.md is missing: run `{REGENERATE}` from the repository root"
    assert committed.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
        f"docs/cli.md is stale (a command or option changed): run `{REGENERATE}` from the repository root "
        "and commit the result"
    )


def test_reference_names_every_command_and_no_machine_path() -> None:
    text = render()
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    for name in group.list_commands(typer.Context(group)):
        assert f"## `mnist-bench {name}`" in text
    assert str(DEFAULT_DATA_DIR) not in text and "default: ~/.cache/mnist-bench]" in text


@pytest.mark.parametrize("env", [{"COLUMNS": "40", "TERM": "dumb"}, {"COLUMNS": "250", "FORCE_COLOR": "1"}])
def test_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    before = render()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert render() == before


def test_every_option_shows_its_default() -> None:
    """Each option that takes a value and may be left out says what leaving it out means, in
    --help and docs/cli.md alike: the value Typer prints, or a show_default string where the
    default is worked out at run time. A new option without one fails here; so does a
    "[default: ...]" written into a help text, which rich markup swallows."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    root = typer.Context(group, info_name="mnist-bench")
    silent, hand_written = [], []
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        assert command is not None
        ctx = typer.Context(command, info_name=name, parent=root)
        for param in command.params:
            if not isinstance(param, TyperOption):
                continue  # arguments are required
            if "[default:" in (param.help or ""):
                hand_written.append(f"{name} {param.opts[0]}")
            if param.is_flag or param.required:
                continue
            record = param.get_help_record(ctx)
            if record is None or "default: " not in record[1]:
                silent.append(f"{name} {param.opts[0]}")
    assert not silent, f"options that show no default (give them show_default=...): {silent}"
    assert not hand_written, f"defaults written into help texts (use show_default=...): {hand_written}"


def test_help_pages_show_those_defaults() -> None:
    """The rich --help pages too: each such option's row ends with its default."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    root = typer.Context(group, info_name="mnist-bench")
    silent = []
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        assert command is not None
        result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "1000"})  # a row a line
        assert result.exit_code == 0
        lines = [line.strip("│ *") for line in result.stdout.splitlines() if line.startswith("│")]
        rows = {line.split()[0]: line for line in lines if line.startswith("-")}
        for param in command.params:
            if isinstance(param, TyperOption) and not (param.is_flag or param.required):
                long_name = max(param.opts, key=len)
                if "[default: " not in rows.get(long_name, ""):
                    silent.append(f"{name} {long_name}")
    assert not silent, f"--help shows no default for: {silent}"
