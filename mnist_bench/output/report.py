"""A study (or several) as one self-contained HTML page, and studies compared.

The figures come from ``report_figures`` (PNG) and ``report_plots`` (interactive). The
page embeds every image as a data URI: it opens offline, from a file, with nothing fetched.
"""

from __future__ import annotations

import base64
import html
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd

from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.measure.anytime_figure import anytime_png
from mnist_bench.output.console import plural
from mnist_bench.output.report_figures import (
    FIGURES,
    PARETO_FIGURE,
    SINCE_FIRST,
    Report,
    build_figures,
    study_curve,
    validation_se,
)
from mnist_bench.search.leaderboard import has_eager_reason, leaderboard, readable
from mnist_bench.search.loop import stored_space
from mnist_bench.search.records import StudyRecord, TrialRecord
from mnist_bench.storage.trial_states import counts_text, state_counts

if TYPE_CHECKING:
    pass


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


LEADERBOARD_NOTE = (
    "best_val_acc: the best validation accuracy over a trial's epochs ± its binomial standard error on the "
    "study's validation images. tied (=): within the validation's noise of the best (one standard error of "
    "their difference); the order among tied trials is noise, and training them longer (promote) tells them apart."
)


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def study_facts(study: optuna.Study, storage_url: str) -> dict[str, Any]:
    """Settings and environment of a study, from what it stored."""
    record = StudyRecord.of(study)
    trials = study.get_trials(deepcopy=False)
    devices = sorted({d for d in (TrialRecord.of(t).device for t in trials) if d is not None})

    def known(value: Any) -> Any:
        return "?" if value is None else value

    # The five settings were stored together: a study without its sampler has no seed stored either.
    seed = "?" if record.sampler is None else "none" if record.seed is None else record.seed
    return {
        "study": study.study_name,
        "storage": storage_url,
        "trials": counts_text(state_counts(study)),
        "objective": known(record.objective),
        "directions": ", ".join(d.name.lower() for d in study.directions),
        "sampler": known(record.sampler),
        "pruner": known(record.pruner),
        "epochs (most per trial)": known(record.epochs),
        "seed": seed,
        "validation images": known(record.val_size),
        "devices": ", ".join(devices) or "?",
        "torch (of the trials)": known(record.torch_version),
        "mnist-bench": known(record.mnist_bench_version),
        "random streams": record.streams_version,
        "search space": "?" if record.space is None else record.space.to_dict(),
        **({"eager steps": eager} if (eager := eager_text(trials)) else {}),
    }


def eager_text(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    """Why trials trained eagerly on CUDA, each reason once with how many trials; "" if none did."""
    reasons = Counter(r for r in (TrialRecord.of(t).eager_reason for t in trials) if r)
    return "; ".join(f"{plural(n, 'trial')}: {reason}" for reason, n in reasons.most_common())


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
    if not has_eager_reason(frame):  # every trial graphed, or a CPU's: no empty column
        frame = frame.drop(columns=["eager_reason"])
    table = readable(frame).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
    body += ["<h2>Leaderboard</h2>", f"<p>{html.escape(LEADERBOARD_NOTE)}</p>", f'<div class="scroll">{table}</div>']
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
    """Studies side by side: size, best accuracy, and how long each took to reach ``target``,
    all read off its anytime curve (``search.anytime``: pruned trials' best epochs count)."""
    rows = []
    for study in studies:
        counts = state_counts(study)
        curve = study_curve(study)
        reached = [p.seconds for p in curve.points if p.accuracy >= target]
        rows.append(
            {
                "study": study.study_name,
                "trials": len(study.get_trials(deepcopy=False)),
                "complete": counts.get("COMPLETE", 0),
                "pruned": counts.get("PRUNED", 0),
                "failed": counts.get("FAIL", 0),
                "best_val_acc": curve.final_best,
                "wall_s": curve.seconds if curve.points else math.nan,
                f"s_to_{target:g}": reached[0] if reached else math.nan,
            }
        )
    return pd.DataFrame(rows)


def write_comparison(studies: Sequence[optuna.Study], folder: Path, *, target: float) -> Report:
    if len(studies) < 2:
        raise UsageError("comparing needs at least two --study options")
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(folder=folder)
    frame = compare(studies, target=target)
    curves = {study.study_name: [study_curve(study)] for study in studies}
    best = max((c.final_best for (c,) in curves.values() if c.points), default=math.nan)
    # The standard error is the validation's: one band only where every study used the same split size.
    sizes = {StudyRecord.of(study).val_size for study in studies}
    se = validation_se(studies[0], best) if len(sizes) == 1 else None
    path = anytime_png(
        curves, folder / "compare.png", best=best if se is not None else None, se=se, target=target, xlabel=SINCE_FIRST
    )
    report.figures["compare.png"] = path
    body = [
        "<h2>Side by side</h2>",
        frame.to_html(index=False, na_rep="never", float_format=lambda v: f"{v:.4g}"),
        _img(
            path,
            "Anytime curves: best validation accuracy so far (complete and pruned trials) against seconds "
            "since each study's first trial started; grey: the best within one standard error of the validation",
        ),
    ]
    report.html = folder / "index.html"
    names = " vs ".join(s.study_name for s in studies)
    report.html.write_text(_PAGE.format(title=html.escape(f"mnist-bench: {names}"), head="", body="\n".join(body)))
    (folder / "compare.csv").write_text(frame.to_csv(index=False))
    return report
