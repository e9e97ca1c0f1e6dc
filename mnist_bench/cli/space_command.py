"""``mnist-bench spaces``: the search spaces that ship with the package."""

from __future__ import annotations

from mnist_bench.cli.common import app, make_console
from mnist_bench.output.console import spaces_lines
from mnist_bench.search.space import shipped_spaces


@app.command()
def spaces() -> None:
    """List the shipped search spaces, one line each: pass a name to `search --space`."""
    console = make_console()
    for line in spaces_lines(shipped_spaces()):
        console.print(line, markup=False)
    console.print(
        'Pass a name to `search --space`, or the path of a file of your own, which may start with base = "NAME".',
        markup=False,
    )
