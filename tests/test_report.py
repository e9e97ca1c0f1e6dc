from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from PIL import Image
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from mnist_bench.cli import app
from mnist_bench.data import DeviceData
from mnist_bench.output.report import compare, write_comparison, write_study_report
from mnist_bench.output.report_figures import FIGURES, pareto_mask
from mnist_bench.output.report_plots import INTERACTIVE
from mnist_bench.search.loop import run_trials
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SearchSettings

SMALL = SearchSpace(depth=(1, 2), width=(8, 64), batch_sizes=(32, 64))


def small_study(tmp_path: Path, data: DeviceData, name: str, trials: int) -> optuna.Study:
    settings = SearchSettings(study=name, storage=f"sqlite:///{tmp_path / 's.db'}", trials=trials, epochs=3, seed=0,
                              val_size=100, sampler="random")  # fmt: skip
    return run_trials(settings, SMALL, data).study


def test_report_writes_every_figure_and_a_self_contained_page(tmp_path: Path, tiny_data: DeviceData) -> None:
    study = small_study(tmp_path, tiny_data, "r", 6)
    report = write_study_report(study, tmp_path / "report", storage_url="sqlite:///s.db")
    assert set(report.figures) == set(FIGURES) and not report.missing
    for path in report.figures.values():
        with Image.open(path) as image:
            assert image.width > 300 and image.height > 200
    assert report.html is not None
    page = report.html.read_text()
    assert page.count('<img src="data:image/png;base64,') == len(FIGURES)
    # Nothing fetched: opens offline (plotly.js's own text, inline, mentions its web site).
    assert not re.search(r'(src|href)="https?://', page.replace(get_plotlyjs(), ""))
    assert "<table" in page and "Settings and environment" in page and "random" in page
    # Interactive twins of the figures, plotly.js inline once, hover texts naming trials.
    assert report.interactive == list(INTERACTIVE)
    assert page.count('class="plotly-graph-div"') == len(INTERACTIVE)
    assert page.count(get_plotlyjs()[:200]) == 1
    complete = [t.number for t in study.trials if t.state.name == "COMPLETE"]
    assert all(f"trial {n}\\u003cbr\\u003e" in page for n in complete)  # "<br>", JSON-escaped


def test_report_on_a_study_without_finished_trials_says_what_is_missing(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="empty", direction="maximize")
    report = write_study_report(study, tmp_path / "report", storage_url="memory")
    assert not report.figures and set(report.missing) == set(FIGURES)
    assert report.html is not None and "no complete trial yet" in report.html.read_text()


def test_the_report_says_why_trials_trained_eagerly_and_only_when_some_did(tmp_path: Path) -> None:
    from tests.test_leaderboard import EAGER, fake_study

    page = write_study_report(fake_study(eager_reason=EAGER), tmp_path / "eager", storage_url="memory").html
    assert page is not None
    text = page.read_text()
    assert "<th>eager steps</th><td>1 trial: " in text and "<th>eager_reason</th>" in text
    assert text.count("capturable is False") == 2  # the settings' line and the trial's cell
    plain = write_study_report(fake_study(), tmp_path / "plain", storage_url="memory").html
    assert plain is not None and "eager" not in plain.read_text()


def test_importance_needs_two_complete_trials(tmp_path: Path, tiny_data: DeviceData) -> None:
    study = small_study(tmp_path, tiny_data, "one", 1)
    report = write_study_report(study, tmp_path / "report", storage_url="x")
    assert "importance.png" in report.missing and "history.png" in report.figures


def test_comparison_side_by_side(tmp_path: Path, tiny_data: DeviceData) -> None:
    a, b = small_study(tmp_path, tiny_data, "a", 3), small_study(tmp_path, tiny_data, "b", 4)
    report = write_comparison([a, b], tmp_path / "cmp", target=0.5)
    rows = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert rows[0].startswith("study,trials,complete,pruned,failed,best_val_acc") and len(rows) == 3
    assert "compare.png" in report.figures


def test_comparison_reads_each_studys_anytime_curve_pruned_trials_included(tmp_path: Path) -> None:
    from tests.test_anytime import trial

    def study(name: str, *rows: tuple[float, float, float, TrialState]) -> optuna.Study:
        made = optuna.create_study(study_name=name, direction="maximize")
        for number, (start, end, accuracy, state) in enumerate(rows):
            made.add_trial(trial(number, start, end, accuracy, state))
        return made

    a = study("a", (0, 10, 0.90, TrialState.COMPLETE), (10, 15, 0.97, TrialState.PRUNED))
    b = study("b", (5, 25, 0.96, TrialState.COMPLETE), (25, 45, 0.98, TrialState.COMPLETE))
    frame = compare([a, b], target=0.965).set_index("study")
    # a's best is a pruned trial's best epoch, 15 s after its first trial started; b's first
    # trial started 5 s after T0, so its clock starts there.
    assert frame.loc["a", ["best_val_acc", "wall_s", "s_to_0.965"]].tolist() == [0.97, 15.0, 15.0]
    assert frame.loc["b", ["best_val_acc", "wall_s", "s_to_0.965"]].tolist() == [0.98, 40.0, 40.0]
    report = write_comparison([a, b], tmp_path / "cmp", target=0.965)
    with Image.open(report.figures["compare.png"]) as image:
        assert image.width > 300 and image.height > 200


def test_pareto_mask() -> None:
    assert pareto_mask([(1, 1), (2, 0), (0, 2), (0.5, 0.5)]) == [True, True, True, False]


runner = CliRunner()


def test_report_cli_and_its_errors(tmp_path: Path, tiny_mnist: Path) -> None:
    space = str(tmp_path / "s.toml")
    args = ["search", "--trials", "2", "--epochs", "1", "--val-size", "100", "--data-dir", str(tiny_mnist),
            "--no-verify", "--studies-dir", str(tmp_path), "--device", "cpu", "--space", space]  # fmt: skip
    (tmp_path / "s.toml").write_text("depth = [1, 1]\nwidth = [8, 16]\n")
    assert runner.invoke(app, args).exit_code == 0
    ok = runner.invoke(app, ["report", "--studies-dir", str(tmp_path)])
    assert ok.exit_code == 0 and (tmp_path / "mnist-mlp" / "report" / "index.html").is_file()
    assert "demo.html left out: no retrained model yet" in ok.stdout
    retrain = ["best", "--retrain", "--epochs", "1", "--studies-dir", str(tmp_path), "--data-dir", str(tiny_mnist),
               "--no-verify", "--device", "cpu"]  # fmt: skip
    assert runner.invoke(app, retrain).exit_code == 0
    linked = runner.invoke(app, ["report", "--studies-dir", str(tmp_path)])
    assert linked.exit_code == 0 and "Draw-a-digit page:" in linked.stdout
    page = (tmp_path / "mnist-mlp" / "report" / "index.html").read_text()
    assert '<a href="demo.html">' in page and (tmp_path / "mnist-mlp" / "report" / "demo.html").is_file()
    missing = runner.invoke(app, ["report", "--study", "nope", "--studies-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "studies there: mnist-mlp" in missing.stderr
    (tmp_path / "a-file").write_text("")
    blocked = runner.invoke(app, ["report", "--studies-dir", str(tmp_path), "--out", str(tmp_path / "a-file" / "r")])
    assert blocked.exit_code == 1 and "cannot write the report to" in blocked.stderr
    assert blocked.stderr.count("\n") == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs Debian's chromium; elsewhere this test skips.
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
def test_report_renders_in_headless_chromium(tmp_path: Path, tiny_data: DeviceData) -> None:
    assert CHROMIUM is not None
    report = write_study_report(small_study(tmp_path, tiny_data, "r", 6), tmp_path / "report", storage_url="x")
    assert report.html is not None
    url = report.html.resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *HEADLESS, *profile, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert f'data-images-loaded="{len(FIGURES)}"' in dom.stdout, dom.stderr[-2000:]
    assert f'data-plots-rendered="{len(INTERACTIVE)}"' in dom.stdout
    assert "<table" in dom.stdout
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *HEADLESS, *profile, f"--screenshot={shot}", "--window-size=1200,2400", url],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    with Image.open(shot) as image:
        colors = image.convert("L").getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50  # not a blank page


def test_multi_objective_report_and_best(tmp_path: Path, tiny_mnist: Path) -> None:
    (tmp_path / "s.toml").write_text("depth = [1, 2]\nwidth = [8, 64]\n")
    common = ["--studies-dir", str(tmp_path), "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    args = ["search", "--trials", "4", "--epochs", "2", "--val-size", "100", "--space", str(tmp_path / "s.toml"),
            "--objective", "accuracy,latency", "--sampler", "nsga2", "--seed", "0"]  # fmt: skip
    result = runner.invoke(app, [*args, *common])
    assert result.exit_code == 0, result.output
    assert "pruned by asha (multi-objective" in " ".join(result.stdout.split()) and "front" in result.stdout
    best = runner.invoke(app, ["best", *common])
    assert best.exit_code == 0 and "Pareto-optimal trials (accuracy, latency)" in best.stdout
    report = runner.invoke(app, ["report", "--studies-dir", str(tmp_path)])
    assert report.exit_code == 0 and "pareto.png" in report.stdout
    page = (tmp_path / "mnist-mlp" / "report" / "index.html").read_text()
    assert page.count('<img src="data:image/png') == len(FIGURES) + 1 and "Pareto front" in page


def test_the_report_shows_each_accuracy_with_its_standard_error_and_marks_ties(tmp_path: Path) -> None:
    from tests.test_leaderboard import fake_study

    page = write_study_report(fake_study(val_size=100), tmp_path / "ties", storage_url="memory").html
    assert page is not None
    text = page.read_text()
    assert "<td>0.9700 ± 0.0171</td>" in text and "<td>0.9500 ± 0.0218</td>" in text
    assert text.count("<td>=</td>") == 2 and "tied (=): within the validation" in text
