"""What a search or a promotion prints while its trials run: a line per finished trial,
notices, stopped workers' waits, a long training's epochs, and (on a terminal) a bar.

The library calls these through its ``on_*`` callbacks; each method renders what it is
given on the console passed in, and computes nothing.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mnist_bench.output.console import duration_text, stopped_line, trial_line
from mnist_bench.search.leaderboard import trial_row
from mnist_bench.search.loop import stored_space
from mnist_bench.search.records import TrialRecord
from mnist_bench.search.study import TrialEpoch, best_accuracy


class TrialLines:
    """The lines of trials running: one a finished trial (``quiet``: none), and for long
    trainings (``epoch_lines``) about that many a trial, with the time it still needs.

    ``source``: the study the trials were promoted from, named beside each line.
    """

    def __init__(self, console: Console, *, quiet: bool, source: str | None = None, epoch_lines: int = 0) -> None:
        self.console, self.quiet, self.source, self.epoch_lines = console, quiet, source, epoch_lines
        self.ran = 0  # trials finished while these lines were shown

    def trial(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        self.ran += 1
        if self.quiet:
            return
        line = trial_line(trial_row(frozen, stored_space(study)), best_accuracy(study))
        if self.source is not None:
            promoted = TrialRecord.of(frozen).promoted_from
            line += f"  (trial {'?' if promoted is None else promoted} of {self.source})"
        self.console.print(line, markup=False)

    def epoch(self, done: TrialEpoch) -> None:
        every = max(1, done.epochs // self.epoch_lines) if self.epoch_lines else 0
        if self.quiet or not every or done.epoch % every or done.epoch >= done.epochs:
            return
        self.console.print(
            f"trial {done.number:3d} epoch {done.epoch}/{done.epochs}: val acc {done.val_acc:.4f}, "
            f"{duration_text(done.wall_s)} so far, {duration_text(done.left_s)} left",
            markup=False,
        )

    def notice(self, line: str) -> None:
        self.console.print(f"[yellow]Note: {escape(line)}[/]")

    def wait(self, wait: Any) -> None:
        """Trials of stopped workers, retried once their grace is over."""
        self.console.print(stopped_line(wait), markup=False)


def trial_bar(console: Console, *, quiet: bool) -> Progress:
    """The bar of finished trials (on a terminal, unless ``quiet``), gone when the search ends."""
    return Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal or quiet,
        transient=True,
    )
