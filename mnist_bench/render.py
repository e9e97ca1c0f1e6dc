"""rich renderings of what the library returns. Nothing here computes results."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.table import Table

# Leaderboard columns shown on screen: (frame column, header, format).
_SCREEN = [
    ("rank", "#", "{}"),
    ("trial", "trial", "{}"),
    ("state", "state", "{}"),
    ("layers", "layers", "{}"),
    ("optimizer", "opt", "{}"),
    ("lr", "lr", "{:.2e}"),
    ("momentum", "mom.", "{:.3f}"),
    ("batch_size", "batch", "{:.0f}"),
    ("epochs_run", "epochs", "{:.0f}"),
    ("best_val_acc", "val acc", "{:.4f}"),
    ("train_time_s", "train s", "{:.1f}"),
    ("samples_per_s", "samples/s", "{:,.0f}"),
]
_STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan"}


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def leaderboard_table(frame: pd.DataFrame, *, top: int | None = None, title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold")
    for _, header, _ in _SCREEN:
        table.add_column(header, justify="left" if header in ("state", "layers", "opt") else "right", no_wrap=True)
    shown = frame if top is None else frame.head(top)
    for row in shown.to_dict("records"):
        cells = [_fmt(row.get(col), fmt) for col, _, fmt in _SCREEN]
        table.add_row(*cells, style=_STATE_STYLE.get(row["state"]) if row["state"] != "COMPLETE" else None)
    return table


def trial_line(row: dict[str, Any], best: float | None) -> str:
    """One line per finished trial: number, state, accuracy, time, and the best so far."""
    state = row["state"].lower()
    acc = _fmt(row.get("best_val_acc"), "{:.4f}")
    secs = _fmt(row.get("train_time_s"), "{:.1f}s")
    text = (
        f"trial {row['trial']:>3} {state:<8} val acc {acc}  {secs:>7}  "
        f"{row.get('layers') or '?'} {row.get('optimizer') or ''} bs {_fmt(row.get('batch_size'), '{:.0f}')}"
    )
    if row.get("reason") and state != "complete":
        text += f"  ({row['reason']})"
    if best is not None:
        text += f"  [best {best:.4f}]"
    return text


_STATE_WORDS = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}


def counts_line(counts: dict[str, int]) -> str:
    """'12 complete, 3 pruned, 0 failed' (running/waiting only when there are any)."""
    return ", ".join(
        f"{counts.get(state, 0)} {word}"
        for state, word in _STATE_WORDS.items()
        if counts.get(state) or state in ("COMPLETE", "PRUNED", "FAIL")
    )
