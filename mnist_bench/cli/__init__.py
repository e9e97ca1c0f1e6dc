"""The ``mnist-bench`` command line: options in, one library call, rendered output out.

``common`` holds the Typer app and what the commands share; each other module registers
its commands on that app when imported, which the app does for a command's module when
that command runs or is listed (``common.COMMANDS``), so a command imports only its own.
``main`` is the console script (and ``python -m mnist_bench``): the app, in a process a
command may end promptly (``common.exit_promptly``).
"""

from mnist_bench.cli import common
from mnist_bench.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """The ``mnist-bench`` console script."""
    common._PROMPT_EXIT["allowed"] = True
    app(prog_name="mnist-bench")
