from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

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
