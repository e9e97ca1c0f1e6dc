"""The ``mnist-bench`` command line: options in, one library call, rendered output out.

``common`` holds the Typer app and what the commands share; each other module
registers its commands on that app when imported here.
"""

from mnist_bench.cli import bench_command, model_commands, study_commands  # noqa: F401  (registers commands)
from mnist_bench.cli.common import app

__all__ = ["app"]
