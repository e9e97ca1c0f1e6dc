"""The ``mnist-bench`` command line: options in, one library call, rendered output out.

``common`` holds the Typer app and what the commands share; each other module
registers its commands on that app when imported here.
"""

from mnist_bench.cli import (  # noqa: F401  (importing registers the commands)
    bench_command,
    checkpoint_commands,
    doctor_command,
    methods_command,
    model_commands,
    search_command,
    space_command,
    study_commands,
)
from mnist_bench.cli.common import app

__all__ = ["app"]
