"""The one exception type the CLI turns into a one-line message."""


class MnistBenchError(Exception):
    """A problem the user can fix (bad option, missing file, unreachable storage).

    The message must stand on its own as a single line: the CLI prints it after
    "Error:" and exits non-zero, without a traceback.
    """
