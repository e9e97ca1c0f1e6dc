"""rich renderings of what ``mnist-bench methods`` returns (``measure.methods``)."""

from __future__ import annotations

import math

from rich.table import Table

from mnist_bench.measure.methods import MethodsResult, Repeat
from mnist_bench.output.console import duration_text, format_cell, plural


def methods_table(result: MethodsResult) -> Table:
    """``methods``' summary: per method, how soon its repeats came within 1 SE of the best any
    method found, the best each found, its pace, how it did against the first method seed by
    seed, and what ``--stop-when-flat`` would have done to it."""
    table = Table(
        title=f"best of all: {result.best:.4f}, 1 SE on {result.settings.val_size:,} images: {result.se:.4f}",
        header_style="bold",
        title_justify="left",
    )
    first = result.settings.methods[0].name
    headers = ("method", "s to within 1 SE (median)", "reached", "final best, median [min-max]", "trials/min",
               f"vs {first}: time, best no lower", "--stop-when-flat: stopped, time share, kept")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header == "method" else "right")
    for s in result.summaries:
        table.add_row(
            s.method,
            "never" if s.s_to_within_median is None else f"{s.s_to_within_median:.1f}",
            f"{s.reached}/{s.repeats}",
            f"{s.final_best_median:.4f} [{s.final_best_min:.4f}-{s.final_best_max:.4f}]",
            format_cell(s.trials_per_min, "{:.1f}"),
            "-" if s.method == first else f"{vs_first(s.vs_first_time_ratio)}, {s.vs_first_not_lower}/{s.repeats}",
            f"{s.flat_stopped}/{s.repeats}, {format_cell(s.flat_time_share_median, '{:.0%}')}, "
            f"{s.flat_kept}/{s.repeats}",
        )
    return table


def anytime_table(result: MethodsResult) -> Table | None:
    """The anytime curves read at round moments: per method, the median over its repeats of
    the best accuracy found by then ("-" while most had found nothing); None for a run whose
    searches all ended within the first of those moments."""
    at = next((tuple(s.best_so_far) for s in result.summaries if s.best_so_far), ())
    if not at:
        return None
    table = Table(title="median best so far, after", header_style="bold", title_justify="left")
    table.add_column("method")
    for seconds in at:
        table.add_column(moment_text(seconds), justify="right")
    for s in result.summaries:
        table.add_row(s.method, *(format_cell(s.best_so_far.get(seconds), "{:.4f}") for seconds in at))
    return table


def moment_text(seconds: int) -> str:
    """'15 s', '2 min', '1 h', '1 h 30 min': a moment of ``search.anytime.MOMENTS_S``."""
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def vs_first(ratio: float | None) -> str:
    """The median time ratio against the first method: 0.40x is in 40% of its time."""
    return "never" if ratio is None else f"{ratio:.2f}x"


def repeat_line(repeat: Repeat) -> str:
    """One line per finished repeat of ``methods``: its method, seed, trials, best and time."""
    curve = repeat.curve
    best = "no accuracy" if math.isnan(curve.final_best) else f"best {curve.final_best:.4f}"
    return (
        f"{repeat.method} seed {repeat.seed}: {plural(curve.finished, 'finished trial')}, {best}, "
        f"{duration_text(curve.seconds)}"
    )
