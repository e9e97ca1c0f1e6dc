"""The anytime figure: best validation accuracy so far against seconds, one line per method.

With several repeats a line is their median and a shaded band their spread (min to max);
the validation's standard error is a grey band around the best accuracy found, since a
curve inside it is tied with the best. ``methods`` draws its repeats with it, and the
report its studies side by side (one repeat each).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mnist_bench.search.anytime import AnytimeCurve, band, time_grid


def anytime_png(
    curves: Mapping[str, Sequence[AnytimeCurve]],
    path: Path,
    *,
    best: float | None = None,
    se: float | None = None,
    title: str = "",
    target: float | None = None,
    xlabel: str = "seconds since the search started",
) -> Path:
    """One line per label (median of its curves, min-max shaded); ``best`` ± ``se`` as a band,
    ``target`` as a dotted line."""
    # Figure() without pyplot: no GUI backend, no global state, safe on headless machines.
    from matplotlib.figure import Figure  # noqa: PLC0415  (matplotlib is slow to import)

    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    grid = time_grid([c for group in curves.values() for c in group if c.points])
    shown: list[float] = []
    for k, (label, group) in enumerate(curves.items()):
        group = [c for c in group if c.points]
        if not group:
            continue
        made = band(group, grid)
        color = f"C{k % 10}"
        median = "" if len(group) == 1 else f" (median of {len(group)})"
        ax.step(grid, made.median, where="post", color=color, label=f"{label}{median}")
        if len(group) > 1:
            ax.fill_between(grid, made.low, made.high, step="post", color=color, alpha=0.2, linewidth=0)
        shown += [v for v in (*made.low, *made.median) if not math.isnan(v)]
    if best is not None and se is not None:
        ax.axhspan(best - se, best + se, color="0.5", alpha=0.25, label=f"best {best:.4f} ± 1 SE ({se:.4f})")
    if target is not None:
        ax.axhline(target, color="0.5", linestyle=":", label=f"target {target:g}")
    if shown:
        # Early trials far below the rest (a diverged one, a first random draw) would squash
        # the curves that matter into a line at the top.
        top = max(shown)
        bottom = max(min(shown), float(np.median(shown)) - 0.05)
        pad = max(top - bottom, 0.002) * 0.1
        upper = top if best is None or se is None else max(top, best + se)
        ax.set_ylim(bottom - pad, min(1.0, upper + pad))
    ax.set(xlabel=xlabel, ylabel="best validation accuracy so far", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path)
    return path
