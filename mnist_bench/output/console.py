"""rich renderings of what the library returns. Nothing here computes results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
from rich.table import Table

from mnist_bench.measure.baselines import describe
from mnist_bench.search.leaderboard import Ties, accuracy_text, has_eager_reason, or_nan
from mnist_bench.search.records import TrialRecord
from mnist_bench.search.stopping import MIN_PATIENCE, PATIENCE_RATIO, FlatStop, Plateau

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
    # Epochs trained, a fraction where a pruner stopped a trial inside an epoch (1.33).
    ("epochs_trained", "epochs", "{:.4g}"),
    ("val_acc", "val acc ± se", "{}"),  # best_val_acc ± val_se, as ``accuracy_text`` writes it
    ("train_time_s", "train s", "{:.1f}"),
    ("samples_per_s", "samples/s", "{:,.0f}"),
]
# Shown only for multi-objective studies.
_MULTI = [("latency_ms", "latency ms", "{:.3f}"), ("n_params", "params", "{:,.0f}"), ("pareto", "front", "{}")]
# Shown only when the study's trials come from more than one version's random streams.
_STREAMS = ("streams", "streams", "{}")
# Shown only when some trial trained eagerly for a reason (on CUDA): a CPU's table keeps its width.
_EAGER = ("eager_reason", "eager because", "{}")
# Shown only when two or more trials are tied with the best: a best alone has no tie to mark.
_TIED = ("tied", "=", "{}")
TIED_CAPTION = "=: tied with the best within the validation's noise (one standard error of their difference)"
_STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan"}


def format_cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def leaderboard_table(frame: pd.DataFrame, *, top: int | None = None, title: str | None = None) -> Table:
    ties = "tied" in frame and int(frame["tied"].sum()) > 1
    table = Table(title=title, header_style="bold", caption=TIED_CAPTION if ties else None)
    columns = _SCREEN + (_MULTI if "pareto" in frame and frame["pareto"].any() else [])
    if ties:
        columns = [columns[0], _TIED, *columns[1:]]
    if "streams" in frame and frame["streams"].nunique(dropna=False) > 1:  # a study resumed with --mixed-versions
        columns = [*columns, _STREAMS]
    if has_eager_reason(frame):
        columns = [*columns, _EAGER]
    for _, header, _ in columns:
        left = header in ("state", "layers", "opt", _EAGER[1])
        table.add_column(header, justify="left" if left else "right", no_wrap=header != _EAGER[1])
    shown = frame if top is None else frame.head(top)
    for row in shown.to_dict("records"):
        row["pareto"] = "*" if row.get("pareto") else ""
        row["tied"] = "=" if row.get("tied") else ""
        row["val_acc"] = accuracy_text(or_nan(row.get("best_val_acc")), or_nan(row.get("val_se")))
        cells = [format_cell(row.get(col), fmt) for col, _, fmt in columns]
        table.add_row(*cells, style=_STATE_STYLE.get(row["state"]) if row["state"] != "COMPLETE" else None)
    return table


def trial_line(row: dict[str, Any], best: float | None) -> str:
    """One line per finished trial: number, state, accuracy, time, why its steps ran
    eagerly (where they did, on CUDA), and the best so far."""
    state = row["state"].lower()
    acc = format_cell(row.get("best_val_acc"), "{:.4f}")
    secs = format_cell(row.get("train_time_s"), "{:.1f}s")
    text = (
        f"trial {row['trial']:>3} {state:<8} val acc {acc}  {secs:>7}  "
        f"{row.get('layers') or '?'} {row.get('optimizer') or ''} bs {format_cell(row.get('batch_size'), '{:.0f}')}"
    )
    if row.get("reason") and state != "complete":
        text += f"  ({row['reason']})"
    if row.get("eager_reason"):
        text += f"  (eager: {row['eager_reason']})"
    if best is not None:
        text += f"  [best {best:.4f}]"
    return text


def ties_line(ties: Ties, *, study: str, options: str = "") -> str:
    """How many trials the validation cannot tell from the best, and the command that can
    (``options``: where the study is, as the command that printed it was told, e.g. `` --studies-dir D``)."""
    best, others = ties.trials[0], ties.trials[1:]
    listed = ", ".join(str(n) for n in others)
    return (
        f"{plural(len(others), 'trial')} {'is' if len(others) == 1 else 'are'} tied with the best (trial {best}) "
        f"within the validation's noise (±{100 * ties.best_se:.2f} points on {ties.val_size:,} images): {listed}. "
        "Their order is noise; training them longer is how to tell them apart: "
        f"mnist-bench promote --study {study} --best {ties.promote_best}{options}"
    )


def _best_text(where: Plateau) -> str:
    return f"best ({accuracy_text(where.best, where.best_se)}, trial {where.best_trial})"


def plateau_line(where: Plateau) -> str:
    """Since which trial the best has not moved beyond the validation's noise (``stopping.plateau``)."""
    if not where.flat_for:
        return f"The {_best_text(where)} moved beyond the validation's noise with the latest finished trial."
    return (
        f"The {_best_text(where)} has not moved beyond the validation's noise since trial "
        f"{where.moved_at} ({plural(where.flat_for, 'finished trial')} ago)."
    )


def flat_stop_line(flat: FlatStop) -> str:
    """Why --stop-when-flat stopped the search, with the numbers its rule used."""
    where = flat.plateau
    since = "" if where.moved_at == where.best_trial else f", since trial {where.moved_at}"
    return (
        f"Stopped after {flat.finished} finished trials (--stop-when-flat): the {_best_text(where)} has not moved "
        f"beyond the noise in the last {plural(where.flat_for, 'finished trial')}{since} (patience {flat.patience} "
        f"= max({MIN_PATIENCE}, {PATIENCE_RATIO:g} × {where.reached_in} finished trials up to trial {where.moved_at}))."
    )


def promotion_table(rows: Sequence[Any], *, short: str, long: str, epochs: int) -> Table:
    """Short-search rank against rank after longer training, one row per promoted trial."""
    title = f"Short search ({short}) against {epochs} epochs ({long}), validation accuracy"
    table = Table(title=title, header_style="bold")
    headers = ("short trial", "short val acc", "short rank", f"{long} trial", f"{epochs}-epoch val acc", "long rank")
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row.short_trial),
            f"{row.short_value:.4f}",
            str(row.short_rank),
            format_cell(row.long_trial, "{}"),
            format_cell(row.long_value, "{:.4f}"),
            format_cell(row.long_rank, "{}"),
        )
    return table


def promotion_line(spearman: float | None, winner: Any, *, long: str) -> str:
    """The rank correlation and the winner to retrain, as one or two sentences."""
    agreement = (
        "Too few finished trials to correlate the ranks."
        if spearman is None
        else f"Spearman rank correlation, short against long: {spearman:+.2f}."
    )
    if winner is None:
        return agreement
    return (
        f"{agreement} Winner: trial {winner.long_trial} of {long} (trial {winner.short_trial} of the short search, "
        f"short rank {winner.short_rank}); retrain it with: mnist-bench best --study {long} --retrain"
    )


def stopped_line(wait: Any) -> str:
    """A ``heartbeats.StoppedWait`` as the one line a search prints before it waits."""
    numbers = [str(n) for n in wait.numbers]
    which = (
        f"trial {numbers[0]}, whose worker"
        if len(numbers) == 1
        else (f"trials {', '.join(numbers[:-1])} and {numbers[-1]}, whose workers")
    )
    return f"Waiting {wait.wait_s} s for {which} stopped, to be retried."


def spaces_lines(spaces: Sequence[Any]) -> list[str]:
    """One line per shipped search space: its name, then its description."""
    width = max((len(s.name) for s in spaces), default=0)
    return [f"{s.name:<{width}}  {s.description or '-'}" for s in spaces]


def key_value_table(rows: dict[str, Any], *, title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, format_cell(value, "{:.6g}") if isinstance(value, float) else str(value))
    return table


def trial_table(ranked: Any, config: Any, *, title: str) -> Table:
    """A stored trial as ``best`` shows it: ``ranked`` a ``loop.RankedTrial``, ``config`` its ``TrainConfig``."""
    record = TrialRecord.of(ranked.trial)
    return key_value_table(
        {
            "trial": ranked.trial.number,
            "rank": f"{ranked.rank} of {ranked.n_complete} complete trials",
            "layers": config.model.layers,
            "optimizer": describe(replace(config, epochs=record.epochs_run or config.epochs)),
            "validation accuracy": f"{format_cell(record.accuracy, '{:.4f}')} (best epoch {record.best_epoch or '?'})",
            "epochs run": "?" if record.epochs_run is None else record.epochs_run,
            "train time": f"{format_cell(record.train_time_s, '{:.1f}')} s",
            "samples/s": format_cell(record.samples_per_s, "{:,.0f}"),
            "parameters": f"{config.model.n_params:,}",
            "training seed": config.seed,
            "params": ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in ranked.trial.params.items()
            ),
        },
        title=title,
    )


def per_class_table(per_class: Sequence[float], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for digit in range(len(per_class)):
        table.add_column(str(digit), justify="right")
    table.add_row(*(f"{acc:.4f}" for acc in per_class))
    return table


def confusion_table(confusion: Sequence[Sequence[int]], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("true \\ pred", justify="right", style="bold")
    for digit in range(len(confusion)):
        table.add_column(str(digit), justify="right")
    for true, row in enumerate(confusion):
        cells = [
            f"[bold green]{n}[/]" if true == pred else (str(n) if n else "[dim]0[/]") for pred, n in enumerate(row)
        ]
        table.add_row(str(true), *cells)
    return table


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def duration_text(seconds: float) -> str:
    """'45 s', '12 min', '1 h 05 min': as precise as a person reading a progress line needs."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def seeds_line(accuracies: Sequence[float], mean: float, std: float) -> str:
    if len(accuracies) == 1:  # a spread of one value is no figure
        return f"test accuracy (1 seed): {accuracies[0]:.4f}"
    listed = ", ".join(f"{a:.4f}" for a in accuracies)
    return f"test accuracy over {len(accuracies)} seeds: {mean:.4f} ± {std:.4f} (mean ± std; {listed})"


def baselines_table(frame: pd.DataFrame, *, title: str) -> Table:
    table = Table(title=title, header_style="bold")
    columns = [
        ("network", "network", "{}"),
        ("settings", "optimizer and settings", "{}"),
        ("reported", "reported", "{}"),
        ("test_acc_mean", "test acc (mean)", "{:.4f}"),
        ("test_acc_std", "± std", "{:.4f}"),
        ("train_time_s", "train s", "{:.1f}"),
        ("samples_per_s", "samples/s", "{:,.0f}"),
    ]
    if "seeds" in frame and (frame["seeds"] < 2).all():  # one seed: no spread to show
        columns = [c for c in columns if c[0] != "test_acc_std"]
        columns[3] = ("test_acc_mean", "test acc", "{:.4f}")
    for _, header, _ in columns:
        table.add_column(header, justify="left" if header in ("network", "optimizer and settings") else "right")
    for row in frame.to_dict("records"):
        table.add_row(*(format_cell(row.get(col), fmt) for col, _, fmt in columns))
    return table


def predictions_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(header_style="bold")
    for header in ("file", "label", "top probabilities"):
        table.add_column(header)
    for row in rows:
        if "error" in row:
            table.add_row(row["file"], "[red]error[/]", f"[red]{row['error']}[/]")
        elif row["label"] is None:
            table.add_row(row["file"], "[yellow]-[/]", f"[yellow]{row['note']}[/]")
        else:
            top = "  ".join(f"{t['digit']}: {t['p']:.3f}" for t in row["top"])
            table.add_row(row["file"], f"[bold]{row['label']}[/]", top)
    return table


Column = tuple[str, str, str]  # (frame column, header, format)

BENCH_COLUMNS: dict[str, list[Column]] = {
    "floor": [("matmul_tflops", "matmul TFLOP/s", "{:.3f}"), ("copy_gb_per_s", "copy GB/s", "{:.1f}")],
    "training": [
        ("network", "network", "{}"),
        ("batch_size", "batch", "{}"),
        ("step", "step", "{}"),
        ("samples_per_s", "samples/s", "{:,.0f}"),
        ("samples_per_s_min", "min", "{:,.0f}"),
        ("samples_per_s_max", "max", "{:,.0f}"),
        ("epoch_s", "epoch s", "{:.3f}"),
        ("floor_samples_per_s", "floor samples/s", "{:,.0f}"),
        ("bound", "floor bound", "{}"),
        ("of_floor", "of floor", "{:.1%}"),
        ("peak_mem_mb", "peak MB", "{:.0f}"),
    ],
    "inflight": [
        ("network", "network", "{}"),
        ("batch_size", "batch", "{}"),
        ("trials", "trials in flight", "{}"),
        ("step", "step", "{}"),
        ("samples_per_s", "total samples/s", "{:,.0f}"),
        ("per_trial_samples_per_s", "per trial", "{:,.0f}"),
        ("vs_one_trial", "vs one trial", "{:.2f}x"),
    ],
    "classic": [
        ("network", "network", "{}"),
        ("batch_size", "batch", "{}"),
        ("classic_samples_per_s", "DataLoader samples/s", "{:,.0f}"),
        ("trainer_samples_per_s", "trainer samples/s", "{:,.0f}"),
        ("speedup", "speed-up", "{:.1f}x"),
        ("classic_epoch_s", "DataLoader epoch s", "{:.2f}"),
        ("trainer_epoch_s", "trainer epoch s", "{:.2f}"),
    ],
    "runtime": [
        ("network", "network", "{}"),
        ("batch_size", "batch", "{}"),
        ("runtime", "runtime", "{}"),
        ("samples_per_s", "samples/s", "{:,.0f}"),
        ("vs_eager_fp32", "vs eager fp32", "{:.2f}x"),
        ("skipped", "note", "{}"),
    ],
    "inference": [
        ("network", "network", "{}"),
        ("latency_ms_median", "1-image ms (median)", "{:.3f}"),
        ("latency_ms_p99", "p99 ms", "{:.3f}"),
        ("throughput_images_per_s", "images/s at batch 8192", "{:,.0f}"),
    ],
    "packing": [
        ("network", "network", "{}"),
        ("batch_size", "batch", "{}"),
        ("trials", "trials at once", "{}"),
        ("method", "method", "{}"),
        ("samples_per_s", "aggregate samples/s", "{:,.0f}"),
        ("vs_one_trial", "vs one trial", "{:.2f}x"),
    ],
    "search": [
        ("method", "method", "{}"),
        ("workers", "workers", "{}"),
        ("parallel", "side by side", "{}"),
        ("trials", "trials", "{}"),
        ("wall_s", "wall s", "{:.1f}"),
        ("trials_per_min", "trials/min", "{:.1f}"),
        ("aggregate_samples_per_s", "samples/s (all workers)", "{:,.0f}"),
        ("speedup", "vs 1 worker", "{:.2f}x"),
        ("vs_hand_written", "vs hand-written", "{:.1f}x"),
    ],
}


def frame_table(frame: pd.DataFrame, columns: Sequence[Column], *, title: str) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    present = [c for c in columns if c[0] in frame.columns]
    for _, header, _ in present:
        table.add_column(
            header, justify="left" if header in ("network", "runtime", "note", "step", "method") else "right"
        )
    for row in frame.to_dict("records"):
        table.add_row(*(format_cell(row.get(col), fmt) for col, _, fmt in present))
    return table


def doctor_table(checks: Sequence[Any]) -> Table:
    """``doctor``'s checks: what each found, and pass, FAIL or (for figures) nothing."""
    table = Table(header_style="bold")
    for header in ("check", "result", ""):
        table.add_column(header)
    for check in checks:
        verdict = "" if check.ok is None else ("[green]pass[/]" if check.ok else "[bold red]FAIL[/]")
        table.add_row(check.name, check.result, verdict)
    return table
