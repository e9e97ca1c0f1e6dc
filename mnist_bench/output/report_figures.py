"""A study's PNG figures: Optuna's own plots and the report's, drawn with matplotlib.

Optuna's matplotlib module draws what it has (optimization history, importances, parallel
coordinates); learning curves with pruned trials set apart, the anytime curve (best so far
against wall-clock time, ``search.anytime``), and accuracy against speed and size with the Pareto front are drawn
here. ``report`` puts them on its page.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.measure.anytime_figure import anytime_png
from mnist_bench.search.anytime import AnytimeCurve, anytime_curve
from mnist_bench.search.leaderboard import or_nan
from mnist_bench.search.noise import binomial_se
from mnist_bench.search.objectives import OBJECTIVES
from mnist_bench.search.records import StudyRecord, TrialRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURES = {
    "history.png": "Optimization history: best validation accuracy so far, by trial and by wall-clock time",
    "learning_curves.png": "Learning curves: validation accuracy per epoch (pruned trials dashed)",
    "importance.png": "Hyperparameter importance (Optuna's fANOVA evaluator)",
    "parallel.png": "Parallel coordinates of the complete trials",
    "tradeoff.png": "Accuracy against training throughput and parameter count; Pareto front marked",
    "anytime.png": "Anytime curve: best validation accuracy so far (complete and pruned trials) against seconds "
    "since the first trial started; grey: the best within one standard error of the validation",
}
SINCE_FIRST = "seconds since the first trial started"
PARETO_FIGURE = "Pareto front of the search's own objectives (multi-objective studies)"


@dataclass
class Report:
    folder: Path
    figures: dict[str, Path] = field(default_factory=dict)  # file name -> path
    missing: dict[str, str] = field(default_factory=dict)  # file name -> why it is not there
    html: Path | None = None
    interactive: list[str] = field(default_factory=list)  # interactive figures on the page
    demo: Path | None = None  # the draw-a-digit page, when the study has a retrained model


def new_figure(width: float = 8, height: float = 4.5) -> Figure:
    from matplotlib.figure import Figure  # noqa: PLC0415

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def trial_accuracy(trial: FrozenTrial) -> float:
    return or_nan(TrialRecord.of(trial).accuracy)


def study_curve(study: optuna.Study) -> AnytimeCurve:
    """The study's anytime curve, from its first trial's start (``search.anytime``)."""
    return anytime_curve(study.get_trials(deepcopy=False))


def validation_se(study: optuna.Study, accuracy: float) -> float | None:
    """The standard error of ``accuracy`` on the study's validation split (None if it stored no size)."""
    val_size = StudyRecord.of(study).val_size
    return None if val_size is None or math.isnan(accuracy) else binomial_se(accuracy, val_size)


def best_so_far(values: Sequence[float]) -> list[float]:
    best, out = -math.inf, []
    for value in values:
        best = max(best, value)
        out.append(best)
    return out


def pareto_mask(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which (higher-is-better, higher-is-better) points no other point beats on both."""
    return [not any(ox >= x and oy >= y and (ox > x or oy > y) for ox, oy in points) for x, y in points]


def _history(study: optuna.Study, path: Path) -> None:
    by_number_trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    curve = study_curve(study)
    fig = new_figure(10, 4)
    by_number, by_time = fig.subplots(1, 2)
    accs = [trial_accuracy(t) for t in by_number_trials]
    xs = [t.number for t in by_number_trials]
    by_number.scatter(xs, accs, s=12, alpha=0.6, label="complete trial")
    by_number.step(xs, best_so_far(accs), where="post", color="C3", label="best so far")
    by_number.set(xlabel="trial number", ylabel="validation accuracy", title="by trial")
    by_number.legend(fontsize=8)
    by_time.step([p.seconds for p in curve.points], [p.best for p in curve.points], where="post", color="C3")
    by_time.set(xlabel=SINCE_FIRST, ylabel="best validation accuracy", title="by time")
    low = min(accs, default=0.9)
    for ax in (by_number, by_time):
        ax.set_ylim(max(0.0, low - 0.02), 1.0)
        ax.grid(alpha=0.3)
    fig.savefig(path)


def _learning_curves(study: optuna.Study, path: Path) -> None:
    fig = new_figure()
    ax = fig.add_subplot()
    for trial in _finished(study):
        curve = TrialRecord.of(trial).val_accs
        if not curve:
            continue
        epochs = range(1, len(curve) + 1)
        if trial.state == TrialState.PRUNED:
            ax.plot(epochs, curve, linestyle="--", color="0.6", linewidth=0.8, alpha=0.7)
        else:
            ax.plot(epochs, curve, linewidth=1.2, alpha=0.9)
    ax.plot([], [], color="C0", label="complete")
    ax.plot([], [], linestyle="--", color="0.6", label="pruned")
    ax.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0.9, 1.0))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path)


def _optuna_plot(draw: Callable[[], Axes], path: Path) -> None:
    """Save a figure drawn by optuna.visualization.matplotlib (which uses pyplot)."""
    import matplotlib  # noqa: PLC0415
    import matplotlib.pyplot as plt  # noqa: PLC0415

    # Optuna switches pyplot to its own style; rc_context puts ours back afterwards.
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib module experimental
        axes = draw()
        figure = cast("Figure", axes.figure)
        figure.set_size_inches(9, 5)
        figure.savefig(path, bbox_inches="tight")
        plt.close(figure)  # type: ignore[arg-type]


def _anytime(study: optuna.Study, path: Path) -> None:
    curve = study_curve(study)
    se = validation_se(study, curve.final_best)
    best = curve.final_best if se is not None else None
    anytime_png({study.study_name: [curve]}, path, best=best, se=se, xlabel=SINCE_FIRST)


def tradeoff_records(study: optuna.Study) -> list[TrialRecord]:
    """The complete trials that stored their speed and size (those of early versions may not)."""
    records = map(TrialRecord.of, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return [r for r in records if r.samples_per_s is not None and r.n_params is not None]


def _tradeoff(study: optuna.Study, path: Path) -> None:
    trials = tradeoff_records(study)
    fig = new_figure(10, 4)
    for ax, (xs, label, better_high) in zip(
        fig.subplots(1, 2),
        (
            ([float(r.samples_per_s or 0) for r in trials], "training samples/s", True),
            ([float(r.n_params or 0) for r in trials], "parameters", False),
        ),
        strict=True,
    ):
        ys = [or_nan(r.accuracy) for r in trials]
        front = pareto_mask([(x if better_high else -x, y) for x, y in zip(xs, ys, strict=True)])
        ax.scatter(xs, ys, s=14, alpha=0.5, label="complete trial")
        pts = sorted((x, y) for x, y, f in zip(xs, ys, front, strict=True) if f)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="C3", label="Pareto front")
        for x, y, t, f in zip(xs, ys, trials, front, strict=True):
            if f:
                ax.annotate(str(t.number), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", xlabel=label, ylabel="best validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path)


def build_figures(study: optuna.Study, folder: Path) -> Report:
    """Every figure that the study's trials allow; what is left out says why."""
    import optuna.visualization.matplotlib as ovm  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    report = Report(folder=folder)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    finished = _finished(study)
    # Multi-objective studies: Optuna's plots need to be told which value is accuracy.
    first_value: Callable[[FrozenTrial], float] | None = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    makers: dict[str, tuple[bool, str, Callable[[Path], None]]] = {
        "history.png": (bool(complete), "no complete trial yet", lambda p: _history(study, p)),
        "learning_curves.png": (bool(finished), "no finished trial yet", lambda p: _learning_curves(study, p)),
        "importance.png": (
            len(complete) >= 2,
            "importance needs at least 2 complete trials",
            lambda p: _optuna_plot(
                lambda: ovm.plot_param_importances(study, target=first_value, target_name="validation accuracy"), p
            ),
        ),
        "parallel.png": (
            len(complete) >= 2,
            "parallel coordinates need at least 2 complete trials",
            lambda p: _optuna_plot(
                lambda: ovm.plot_parallel_coordinate(study, target=first_value, target_name="validation accuracy"), p
            ),
        ),
        "tradeoff.png": (bool(complete), "no complete trial yet", lambda p: _tradeoff(study, p)),
        "anytime.png": (bool(study_curve(study).points), "no finished trial yet", lambda p: _anytime(study, p)),
    }
    if len(study.directions) > 1:
        # A name this version does not know (a later version's study) is shown as it is.
        names = [OBJECTIVES[o].label if o in OBJECTIVES else o for o in StudyRecord.of(study).objectives]
        named = names if len(names) == len(study.directions) else None
        makers["pareto.png"] = (
            len(complete) >= 1,
            "no complete trial yet",
            lambda p: _optuna_plot(lambda: ovm.plot_pareto_front(study, target_names=named), p),
        )
    for name, (possible, why, make) in makers.items():
        if not possible:
            report.missing[name] = why
            continue
        try:
            make(folder / name)
            report.figures[name] = folder / name
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importance on constant params
            report.missing[name] = f"could not be drawn: {exc}"
    return report
