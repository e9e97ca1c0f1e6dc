"""A study (or several) as PNG figures and one self-contained HTML page.

Optuna's own matplotlib module draws what it has (optimization history, importances,
parallel coordinates); the rest (learning curves with pruned trials set apart,
best-so-far against wall-clock time, accuracy against speed and size with the Pareto
front) is drawn here with matplotlib. The page embeds every image as a data URI: it
opens offline, from a file, with nothing fetched.
"""

from __future__ import annotations

import base64
import html
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.errors import MnistBenchError
from mnist_bench.search.leaderboard import leaderboard
from mnist_bench.search.loop import stored_space
from mnist_bench.search.records import TrialRecord, study_streams
from mnist_bench.storage.trial_states import state_counts

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURES = {
    "history.png": "Optimization history: best validation accuracy so far, by trial and by wall-clock time",
    "learning_curves.png": "Learning curves: validation accuracy per epoch (pruned trials dashed)",
    "importance.png": "Hyperparameter importance (Optuna's fANOVA evaluator)",
    "parallel.png": "Parallel coordinates of the complete trials",
    "tradeoff.png": "Accuracy against training throughput and parameter count; Pareto front marked",
}
PARETO_FIGURE = "Pareto front of the search's own objectives (multi-objective studies)"


@dataclass
class Report:
    folder: Path
    figures: dict[str, Path] = field(default_factory=dict)  # file name -> path
    missing: dict[str, str] = field(default_factory=dict)  # file name -> why it is not there
    html: Path | None = None
    interactive: list[str] = field(default_factory=list)  # interactive figures on the page
    demo: Path | None = None  # the draw-a-digit page, when the study has a retrained model


def _figure(width: float = 8, height: float = 4.5) -> Figure:
    from matplotlib.figure import Figure  # noqa: PLC0415

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _accuracy(trial: FrozenTrial) -> float:
    value = TrialRecord.of(trial).accuracy
    return value if value is not None else math.nan


def completed_over_time(study: optuna.Study) -> list[tuple[float, FrozenTrial]]:
    """Complete trials in the order they finished, with seconds since the study's first start."""
    starts = [t.datetime_start for t in _finished(study) if t.datetime_start is not None]
    done = [
        (t.datetime_complete, t)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.datetime_complete is not None
    ]
    if not starts:
        return []
    first = min(starts)
    return [((when - first).total_seconds(), t) for when, t in sorted(done, key=lambda pair: pair[0])]


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
    timeline = completed_over_time(study)
    fig = _figure(10, 4)
    by_number, by_time = fig.subplots(1, 2)
    accs = [_accuracy(t) for t in by_number_trials]
    xs = [t.number for t in by_number_trials]
    by_number.scatter(xs, accs, s=12, alpha=0.6, label="complete trial")
    by_number.step(xs, best_so_far(accs), where="post", color="C3", label="best so far")
    by_number.set(xlabel="trial number", ylabel="validation accuracy", title="by trial")
    by_number.legend(fontsize=8)
    bests = best_so_far([_accuracy(t) for _, t in timeline])
    by_time.step([s for s, _ in timeline], bests, where="post", color="C3")
    by_time.set(xlabel="seconds since the first trial started", ylabel="best validation accuracy", title="by time")
    low = min(accs, default=0.9)
    for ax in (by_number, by_time):
        ax.set_ylim(max(0.0, low - 0.02), 1.0)
        ax.grid(alpha=0.3)
    fig.savefig(path)


def _learning_curves(study: optuna.Study, path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    for trial in _finished(study):
        curve = TrialRecord.of(trial).epoch_accuracies
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


def tradeoff_records(study: optuna.Study) -> list[TrialRecord]:
    """The complete trials that stored their speed and size (those of early versions may not)."""
    records = map(TrialRecord.of, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return [r for r in records if r.samples_per_s is not None and r.n_params is not None]


def _tradeoff(study: optuna.Study, path: Path) -> None:
    trials = tradeoff_records(study)
    fig = _figure(10, 4)
    for ax, (xs, label, better_high) in zip(
        fig.subplots(1, 2),
        (
            ([float(r.samples_per_s or 0) for r in trials], "training samples/s", True),
            ([float(r.n_params or 0) for r in trials], "parameters", False),
        ),
        strict=True,
    ):
        ys = [r.accuracy if r.accuracy is not None else math.nan for r in trials]
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
    }
    if len(study.directions) > 1:
        names = [o.replace("accuracy", "validation accuracy") for o in study.user_attrs.get("objectives", [])]
        makers["pareto.png"] = (
            len(complete) >= 1,
            "no complete trial yet",
            lambda p: _optuna_plot(lambda: ovm.plot_pareto_front(study, target_names=names or None), p),
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


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    text = html.escape(alt)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{text}"><figcaption>{text}</figcaption></figure>'


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.6rem; }} h2 {{ font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; font-size: 0.8rem; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
th {{ background: #f3f3f3; }} .scroll {{ overflow-x: auto; }} figure {{ margin: 1rem 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.85rem; }} .missing {{ color: #a33; }}
.demo {{ font-size: 1.1rem; background: #eef4ff; padding: .6rem 1rem; border-radius: 6px; }}
</style>{head}</head>
<body>
<h1>{title}</h1>
{body}
<script>
// Lets a test (or a reader) see that every figure decoded: count the images with pixels.
// The same for the interactive plots: a plot that rendered has plotly's SVG inside.
window.addEventListener("load", () => {{
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.imagesLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const plots = [...document.querySelectorAll(".plotly-graph-div")];
  document.body.dataset.plots = plots.length;
  document.body.dataset.plotsRendered = plots.filter(p => p.querySelector(".main-svg")).length;
}});
</script>
</body></html>
"""


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def study_facts(study: optuna.Study, storage_url: str) -> dict[str, Any]:
    """Settings and environment of a study, from what it stored."""
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    devices = sorted({d for d in (TrialRecord.of(t).device for t in trials) if d is not None})
    counts = state_counts(study)
    return {
        "study": study.study_name,
        "storage": storage_url,
        "trials": ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "none",
        "objective": attrs.get("objective", "?"),
        "directions": ", ".join(d.name.lower() for d in study.directions),
        "sampler": attrs.get("sampler", "?"),
        "pruner": attrs.get("pruner", "?"),
        "epochs (most per trial)": attrs.get("epochs", "?"),
        "seed": attrs.get("seed", "?") if attrs.get("seed", "?") is not None else "none",
        "validation images": attrs.get("val_size", "?"),
        "devices": ", ".join(devices) or "?",
        "torch (of the trials)": attrs.get("torch", "?"),
        "mnist-bench": attrs.get("mnist_bench_version", "?"),
        "random streams": study_streams(attrs),
        "search space": attrs.get("space", "?"),
    }


def retrained_model(models_dir: Path) -> Path | None:
    """The study's retrained checkpoint (``best --retrain``) with the best test accuracy, if any."""
    from mnist_bench.artifacts.checkpoint import META_FILE, load  # noqa: PLC0415

    best: tuple[float, Path] | None = None
    for meta in sorted(models_dir.glob(f"trial-*/{META_FILE}")):
        try:
            accuracy = float(load(meta).meta.get("test", {}).get("accuracy", 0.0))
        except MnistBenchError:
            continue  # a broken checkpoint is not offered
        if best is None or accuracy > best[0]:
            best = (accuracy, meta.parent)
    return best[1] if best else None


def _demo_link(models_dir: Path | None, folder: Path, report: Report) -> str:
    """Write the draw-a-digit page beside the report when the study has a retrained model."""
    from mnist_bench.artifacts.checkpoint import load  # noqa: PLC0415
    from mnist_bench.artifacts.demo import DEMO_FILE, write_demo  # noqa: PLC0415

    if models_dir is None:
        return ""
    model = retrained_model(models_dir)
    if model is None:
        report.missing[DEMO_FILE] = "no retrained model yet: run best --retrain for one"
        return ""
    report.demo = write_demo(load(model), folder / DEMO_FILE)
    return (
        f'<p class="demo"><a href="{DEMO_FILE}">Draw a digit</a> and watch the retrained model '
        f"({html.escape(model.name)}) answer, in the browser, offline.</p>"
    )


def write_study_report(
    study: optuna.Study, folder: Path, *, storage_url: str, models_dir: Path | None = None
) -> Report:
    """The study's page; ``models_dir`` (studies/<study>) is where retrained models are looked for."""
    from mnist_bench.output.report_plots import INTERACTIVE, interactive_figures, plotly_script  # noqa: PLC0415

    report = build_figures(study, folder)
    frame = leaderboard(study, stored_space(study))
    plots, plots_missing = interactive_figures(study)
    report.interactive = list(plots)
    body = [_demo_link(models_dir, folder, report)]
    body += ["<h2>Settings and environment</h2>", _table(study_facts(study, storage_url))]
    body += ["<h2>Interactive figures</h2>"]
    body += [
        f'<figure class="plot">{fragment}<figcaption>{html.escape(INTERACTIVE[key])}</figcaption></figure>'
        for key, fragment in plots.items()
    ]
    body += [f'<p class="missing">{key} (interactive): {html.escape(why)}</p>' for key, why in plots_missing.items()]
    body += ["<h2>Figures (PNG)</h2>"]
    body += [_img(path, FIGURES.get(name, PARETO_FIGURE)) for name, path in report.figures.items()]
    body += [f'<p class="missing">{html.escape(name)}: {html.escape(why)}</p>' for name, why in report.missing.items()]
    table = frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
    body += ["<h2>Leaderboard</h2>", f'<div class="scroll">{table}</div>']
    report.html = folder / "index.html"
    report.html.write_text(
        _PAGE.format(
            title=html.escape(f"mnist-bench study {study.study_name}"),
            head=plotly_script() if plots else "",
            body="\n".join(body),
        )
    )
    return report


def compare(studies: Sequence[optuna.Study], *, target: float) -> pd.DataFrame:
    """Studies side by side: size, best accuracy, and how long each took to reach ``target``."""
    rows = []
    for study in studies:
        counts = state_counts(study)
        timeline = completed_over_time(study)
        reached = [sec for sec, t in timeline if _accuracy(t) >= target]
        rows.append(
            {
                "study": study.study_name,
                "trials": len(study.get_trials(deepcopy=False)),
                "complete": counts.get("COMPLETE", 0),
                "pruned": counts.get("PRUNED", 0),
                "failed": counts.get("FAIL", 0),
                "best_val_acc": max((_accuracy(t) for _, t in timeline), default=math.nan),
                "wall_s": timeline[-1][0] if timeline else math.nan,
                f"s_to_{target:g}": reached[0] if reached else math.nan,
            }
        )
    return pd.DataFrame(rows)


def write_comparison(studies: Sequence[optuna.Study], folder: Path, *, target: float) -> Report:
    if len(studies) < 2:
        raise MnistBenchError("comparing needs at least two --study options")
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(folder=folder)
    frame = compare(studies, target=target)
    fig = _figure()
    ax = fig.add_subplot()
    for study in studies:
        timeline = completed_over_time(study)
        if timeline:
            bests = best_so_far([_accuracy(t) for _, t in timeline])
            ax.step([sec for sec, _ in timeline], bests, where="post", label=study.study_name)
    ax.axhline(target, color="0.5", linestyle=":", label=f"target {target:g}")
    ax.set(xlabel="seconds since the study's first trial", ylabel="best validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = folder / "compare.png"
    fig.savefig(path)
    report.figures["compare.png"] = path
    body = [
        "<h2>Side by side</h2>",
        frame.to_html(index=False, na_rep="never", float_format=lambda v: f"{v:.4g}"),
        _img(path, "Best validation accuracy so far against wall-clock time, per study"),
    ]
    report.html = folder / "index.html"
    names = " vs ".join(s.study_name for s in studies)
    report.html.write_text(_PAGE.format(title=html.escape(f"mnist-bench: {names}"), head="", body="\n".join(body)))
    (folder / "compare.csv").write_text(frame.to_csv(index=False))
    return report
