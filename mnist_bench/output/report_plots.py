"""Interactive figures of a study for the report page: hover a point to see its trial.

Optuna's own plotly figures (history, parallel coordinates, importance) and a trade-off
plot drawn here, each as an HTML fragment. plotly.js itself is embedded once per page
(``plotly_script``), so the page still opens offline; the PNG figures stay for papers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_bench.search.records import TrialRecord

INTERACTIVE = {
    "history": "Optimization history: hover a point for the trial's number and parameters",
    "parallel": "Parallel coordinates of the complete trials: drag along an axis to filter",
    "importance": "Hyperparameter importance (fANOVA)",
    "tradeoff": "Accuracy against training samples/s and parameter count: hover a point for the trial",
}


def plotly_script() -> str:
    """plotly.js inline: a few MB, but nothing is fetched when the page opens."""
    from plotly.offline import get_plotlyjs  # noqa: PLC0415

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def _fragment(figure: object) -> str:
    import plotly.io as pio  # noqa: PLC0415

    return pio.to_html(
        figure, include_plotlyjs=False, full_html=False, default_height="480px", config={"displaylogo": False}
    )


def _hover(trial: FrozenTrial) -> str:
    params = "<br>".join(
        f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in sorted(trial.params.items())
    )
    return f"trial {trial.number}<br>{params}"


def _tradeoff(study: optuna.Study) -> object:
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    trials = [
        (t, r)
        for t, r in ((t, TrialRecord.of(t)) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if r.samples_per_s is not None and r.n_params is not None  # early versions' trials may lack them
    ]
    records = [r for _, r in trials]
    acc = [r.accuracy for r in records]
    text = [_hover(t) for t, _ in trials]
    figure = make_subplots(rows=1, cols=2, shared_yaxes=True)
    for col, key, xs in (
        (1, "samples_per_s", [r.samples_per_s for r in records]),
        (2, "n_params", [r.n_params for r in records]),
    ):
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=acc,
                mode="markers",
                hovertext=text,
                hoverinfo="text+x+y",
                name=key,
                showlegend=False,
            ),
            row=1,
            col=col,
        )
    figure.update_xaxes(type="log", title_text="training samples/s", row=1, col=1)
    figure.update_xaxes(type="log", title_text="parameters", row=1, col=2)
    figure.update_yaxes(title_text="best validation accuracy", row=1, col=1)
    return figure


def interactive_figures(study: optuna.Study) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> HTML fragment, name -> why it is missing) for every figure in INTERACTIVE."""
    import optuna.visualization as ov  # noqa: PLC0415

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    first: Callable[[FrozenTrial], float] | None = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    name = "validation accuracy"
    makers: dict[str, tuple[bool, str, Callable[[], object]]] = {
        "history": (
            bool(complete),
            "no complete trial yet",
            lambda: ov.plot_optimization_history(study, target=first, target_name=name),
        ),
        "parallel": (
            len(complete) >= 2,
            "needs at least 2 complete trials",
            lambda: ov.plot_parallel_coordinate(study, target=first, target_name=name),
        ),
        "importance": (
            len(complete) >= 2,
            "needs at least 2 complete trials",
            lambda: ov.plot_param_importances(study, target=first, target_name=name),
        ),
        "tradeoff": (bool(complete), "no complete trial yet", lambda: _tradeoff(study)),
    }
    made: dict[str, str] = {}
    missing: dict[str, str] = {}
    for key, (possible, why, make) in makers.items():
        if not possible:
            missing[key] = why
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks some plots experimental
                made[key] = _fragment(make())
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            missing[key] = f"could not be drawn: {exc}"
    return made, missing
