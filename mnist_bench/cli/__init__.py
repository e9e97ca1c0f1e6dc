"""The ``mnist-bench`` command line: options in, one library call, rendered output out.

``common`` holds the Typer app and what the commands share; each other module registers
its commands on that app when imported, which the app does for a command's module when
that command runs or is listed (``common.COMMANDS``), so a command imports only its own.
"""

from mnist_bench.cli.common import app

__all__ = ["app"]
