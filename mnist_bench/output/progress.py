"""What a search or a promotion prints while its trials run: a line per finished trial,
notices, stopped workers' waits, a long training's epochs, and (on a terminal) a bar.

The library calls these through its ``on_*`` callbacks; each method renders what it is
given on the console passed in, and computes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mnist_bench.output.console import (
    duration_text,
    flat_stop_line,
    leaderboard_table,
    plateau_line,
    stopped_line,
    ties_line,
    trial_line,
)
from mnist_bench.search.job import SearchResult, StudyStart
from mnist_bench.search.leaderboard import trial_row
from mnist_bench.search.loop import stored_space
from mnist_bench.search.records import TrialRecord
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import TrialEpoch, best_accuracy
from mnist_bench.storage.rdb import redact
from mnist_bench.storage.trial_states import counts_text


class TrialLines:
    """The lines of trials running: one a finished trial (``quiet``: none), and for long
    trainings (``epoch_lines``) about that many a trial, with the time it still needs.

    ``source``: the study the trials were promoted from, named beside each line.
    """

    def __init__(
        self,
        console: Console,
        *,
        quiet: bool,
        space: SearchSpace | None = None,
        source: str | None = None,
        epoch_lines: int = 0,
    ) -> None:
        self.console, self.quiet, self.space, self.source, self.epoch_lines = console, quiet, space, source, epoch_lines
        self.ran = 0  # trials finished while these lines were shown

    def trial(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        self.ran += 1
        if self.quiet:
            return
        space = self.space if self.space is not None else stored_space(study)
        line = trial_line(trial_row(frozen, space), best_accuracy(study))
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


class SearchLines(TrialLines):
    """A search's lines: its first line (``start``), a line a trial under a bar of finished
    trials (on a terminal, unless ``quiet``; gone when the search ends), its last lines (``end``)."""

    def __init__(
        self, console: Console, *, quiet: bool, space: SearchSpace, intro: Sequence[str], where: str, options: str = ""
    ) -> None:
        super().__init__(console, quiet=quiet, space=space)
        self.intro, self.where = intro, where  # notes printed first; where the trials train
        self.options = options  # where the study is, for the commands its last lines print
        self.bar = trial_bar(console, quiet=quiet)
        self.task = self.bar.add_task("search", total=0, best="")
        self.live = contextlib.ExitStack()  # the bar, from the first trial to the end

    def start(self, start: StudyStart) -> None:
        for line in self.intro:
            self.console.print(line, markup=False)
        settings = start.settings
        self.console.print(
            f"Study [bold]{escape(settings.study)}[/] in {escape(redact(settings.storage))}: "
            f"{start.trials} trial(s) so far; target {settings.trials} finished"
            f"{' at most, fewer once the best is flat' if settings.stop_when_flat else ''}; "
            f"training on {escape(self.where)}, {settings.epochs} epoch(s) max, {settings.pruning}."
        )
        self.bar.update(self.task, total=start.missing)
        self.live.enter_context(self.bar)

    def trial(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        super().trial(study, frozen)
        best = best_accuracy(study)
        self.bar.update(self.task, advance=1, best=f"best {best:.4f}" if best is not None else "")

    def end(self, run: SearchResult, *, top: int) -> None:
        """Closes the bar, then the leaderboard and what the study holds now."""
        self.live.close()
        name, target = run.study.study_name, run.target
        self.console.print(
            leaderboard_table(run.frame, top=top, title=f"Top {min(top, len(run.frame))} of study {name}")
        )
        self.console.print(
            f"Ran {self.ran} trial(s). Study {name} now holds {len(run.study.trials)} trials "
            f"({counts_text(run.counts)}); {run.finished}/{target} finished."
        )
        self.console.print("Leaderboard written to " + " and ".join(str(p) for p in run.paths))
        if run.flat is not None:
            self.console.print(flat_stop_line(run.flat), markup=False)
        elif run.finished < target and not run.interrupted:
            self.console.print(f"Run the same command again to reach {target} finished trials.")
        if run.plateau is not None:
            self.console.print(plateau_line(run.plateau), markup=False)
        if run.ties is not None:
            self.console.print(ties_line(run.ties, study=name, options=self.options), markup=False)


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
