"""The lines and tables of ``mnist-bench speedrun`` and ``mnist-bench recipes``.

rich alone, no pandas (unlike ``console``): the speedrun's start-up is part of what it measures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table

from mnist_bench.config import TrainConfig
from mnist_bench.optimizers import optimizer_spec
from mnist_bench.speedrun.recipe import Recipe, target_text
from mnist_bench.speedrun.run import SpeedrunResult, SpeedrunRun


def percent(acc: float, decimals: int = 2) -> str:
    """A fraction as a percentage: 0.98123 -> '98.12%'."""
    return f"{acc * 100:.{decimals}f}%"


def training_text(config: TrainConfig) -> str:
    """The config as one line: net, epochs, batch, optimizer and rate, schedule, then what is not plain."""
    spec = optimizer_spec(config.optimizer)
    optimizer = f"{config.optimizer} lr {config.lr:g}"
    if spec.momentum:
        optimizer += f" momentum {config.momentum:g}"
    if config.weight_decay:
        optimizer += f" weight decay {config.weight_decay:g}"
    parts = [
        config.model.layers,
        f"{config.epochs} epoch{'s' if config.epochs > 1 else ''}",
        f"batch {config.batch_size}",
        optimizer,
    ]
    parts.append(f"{config.schedule} schedule")
    extras = {
        "dropout": config.model.dropout,
        "label smoothing": config.label_smoothing,
        "max-norm": config.max_norm,
    }
    parts += [f"{name} {value:g}" for name, value in extras.items() if value]
    if config.augment != "none":
        parts.append(f"{config.augment} augmentation")
    return ", ".join(parts)


def recipe_line(recipe: Recipe, device: str, device_name: str) -> str:
    """Which recipe runs, what it trains, and where."""
    aim = f"for {target_text(recipe.target)}% on {recipe.device}"
    return (
        f"Recipe {recipe.name} ({aim}): {training_text(recipe.config)}, {recipe.precision}; on {device} ({device_name})"
    )


def run_line(run: SpeedrunRun, index: int, total: int) -> str:
    """One finished run, as it finishes."""
    return (
        f"run {index}/{total}, seed {run.seed}: trained in {run.train_s:.2f} s, test accuracy {percent(run.test_acc)}"
    )


def runs_table(runs: Sequence[SpeedrunRun], *, title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for name in ("run", "seed", "training s", "test accuracy %"):
        table.add_column(name, justify="right")
    for index, run in enumerate(runs, 1):
        table.add_row(str(index), str(run.seed), f"{run.train_s:.2f}", f"{run.test_acc * 100:.2f}")
    return table


def _mean_text(mean_acc: float, target: float) -> str:
    """The mean as a verdict shows it: with the decimals it takes not to read as the target it missed."""
    for decimals in (2, 3, 4):
        text = percent(mean_acc, decimals)
        if round(mean_acc * 100, 6) >= target or float(text[:-1]) < target:
            break
    return text


def summary_lines(result: SpeedrunResult) -> list[str]:
    """Accuracy (mean ± std over runs), training seconds (median, range) and the verdict."""
    runs = len(result.runs)
    spread = "" if result.std_acc is None else f" ± {result.std_acc * 100:.2f}"
    lines = [
        f"test accuracy: mean {percent(result.mean_acc)}{spread} over {runs} run{'s' if runs > 1 else ''}"
        + (" (± the sample std over runs, in points)" if spread else ""),
        f"training: median {result.median_train_s:.2f} s, range {result.min_train_s:.2f}-{result.max_train_s:.2f} s "
        "(first step to last, each run)",
    ]
    if result.interrupted:
        return lines
    mean, target = _mean_text(result.mean_acc, result.target), target_text(result.target)
    lines.append(f"reached: mean {mean} >= {target}%" if result.reached else f"not reached: mean {mean} < {target}%")
    return lines


def wall_line(seconds: float, since: str) -> str:
    return f"wall time: {seconds:.1f} s from {since} (start-up, data, training and tests)"


def recipes_table(recipes: Iterable[Recipe]) -> Table:
    """The shipped recipes, one row each, with the figure each gave when it shipped."""
    table = Table(title="Shipped speedrun recipes", title_justify="left", header_style="bold")
    for name in ("name", "target", "device", "net", "epochs", "batch", "precision", "shipped figure"):
        table.add_column(name)
    for recipe in recipes:
        shipped = recipe.provenance
        figure = (
            "-"
            if shipped is None
            else f"{percent(shipped.mean_acc)} in {shipped.median_train_s:.1f} s (median of {shipped.runs} runs; "
            f"{shipped.machine}, {shipped.cores} cores, {shipped.date}, mnist-bench {shipped.mnist_bench})"
        )
        table.add_row(
            recipe.name,
            f"{target_text(recipe.target)}%",
            recipe.device,
            recipe.config.model.layers,
            str(recipe.config.epochs),
            str(recipe.config.batch_size),
            recipe.precision,
            figure,
        )
    return table
