from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from mnist_bench.cli import app
from mnist_bench.errors import MnistBenchError
from mnist_bench.measure.methods import (
    Method,
    MethodsResult,
    MethodsSettings,
    Repeat,
    against_first,
    finished_repeat,
    parse_methods,
    replay_flat_stop,
    summarize,
)
from mnist_bench.output.methods import anytime_table, moment_text
from mnist_bench.search.loop import open_study
from mnist_bench.search.records import BEST_VAL_ACC
from mnist_bench.search.space import load_space
from mnist_bench.storage.rdb import open_storage
from tests.test_anytime import curve_of

runner = CliRunner()


def test_methods_are_sampler_plus_pruner_from_the_registries() -> None:
    assert parse_methods("tpe+median, random+none") == (Method("tpe", "median"), Method("random", "none"))
    assert parse_methods("tpe+asha@3") == (Method("tpe", "asha", 3),)
    assert Method("tpe", "asha", 3).name == "tpe+asha@3" and Method("tpe", "asha", 3).study(0) == "tpe-asha-r3-seed0"
    assert Method("tpe", "hyperband").name == "tpe+hyperband" and Method("tpe", "none").study(3) == "tpe-none-seed3"
    for text, message in (
        ("tpe", "not SAMPLER+PRUNER"),
        ("bayes+median", "sampler='bayes' must be one of"),
        ("tpe+bohb", "pruner='bohb' must be one of"),
        ("tpe+asha@0", "reports per epoch after '@'"),
        ("tpe+asha@x", "reports per epoch after '@'"),
        ("tpe+median,tpe+median@1", "twice"),
        ("tpe+median,tpe+median", "twice"),
        (" , ", "at least one method"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_methods(text)
    with pytest.raises(MnistBenchError, match="--repeats 0"):
        MethodsSettings(parse_methods("tpe+median"), repeats=0)


def test_summary_times_each_method_to_within_one_se_of_the_best_of_all() -> None:
    settings = MethodsSettings(parse_methods("tpe+median,random+none"), repeats=3, val_size=10_000)
    tpe, rnd = (m.name for m in settings.methods)
    repeats = [
        Repeat(tpe, 0, "a", curve_of((10, 0.97), (20, 0.98))),
        Repeat(tpe, 1, "b", curve_of((5, 0.979), (30, 0.975))),
        Repeat(tpe, 2, "c", curve_of((40, 0.95))),  # never within 1 SE
        Repeat(rnd, 0, "d", curve_of((10, 0.90))),
        Repeat(rnd, 1, "e", curve_of((10, 0.91))),
        Repeat(rnd, 2, "f", curve_of((50, 0.979))),
    ]
    best, se, (a, b) = summarize(repeats, settings)
    assert best == 0.98 and se == pytest.approx(math.sqrt(0.98 * 0.02 / 10_000))  # 0.0014: 0.979 is tied
    assert (a.reached, a.s_to_within_median, a.s_to_within_min, a.s_to_within_max) == (2, 20.0, 5.0, None)
    assert (a.final_best_median, a.final_best_min, a.final_best_max) == (0.979, 0.95, 0.98)
    # Two of three random repeats never got there: so did its median.
    assert (b.reached, b.s_to_within_median, b.s_to_within_min) == (1, None, 50.0)
    assert a.trials_per_min == pytest.approx(4.0)  # median of 6, 4 and 1.5 per minute
    # The curves read at the round moments the longest repeat (50 s) lasted to: at 15 s one
    # random repeat of three has found nothing yet, and counts as below the other two.
    assert a.best_so_far == {15: 0.97, 30: 0.979} and b.best_so_far == {15: 0.90, 30: 0.90}
    result = MethodsResult(settings, tuple(repeats), best, se, (a, b), "sqlite:///x.db", {})
    table = anytime_table(result)
    assert table is not None
    console = Console(width=120, record=True)
    console.print(table)
    shown = console.export_text()
    assert "15 s" in shown and "30 s" in shown and "0.9790" in shown and "0.9000" in shown
    short = [Repeat(tpe, 0, "a", curve_of((10, 0.97)))]
    assert anytime_table(MethodsResult(settings, tuple(short), 0.97, se, summarize(short, settings)[2], "", {})) is None
    assert [moment_text(s) for s in (15, 120, 3600, 5400)] == ["15 s", "2 min", "1 h", "1 h 30 min"]


def test_methods_runs_every_repeat_and_writes_curves_summary_figure_and_studies(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    (tmp_path / "s.toml").write_text("depth = [1, 1]\nwidth = [8, 16]\n")
    out = tmp_path / "methods"
    # A study another kind of run left in --out is not taken for a finished search.
    out.mkdir()
    stale = f"sqlite:///{out / 'methods.db'}"
    optuna.create_study(study_name="tpe-median-seed0", storage=stale).optimize(lambda t: 0.5, n_trials=3)
    args = ["methods", "--methods", "tpe+median,random+none", "--repeats", "2", "--trials", "2", "--epochs", "1",
            "--val-size", "100", "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu",
            "--space", str(tmp_path / "s.toml"), "--out", str(out)]  # fmt: skip
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "pass --restart" in refused.stderr and refused.stderr.count("\n") == 1
    args.append("--restart")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "random+none seed 1: 2 finished trials" in result.stdout and "Written to" in result.stdout
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns) == ["method", "seed", "trial", "seconds", "accuracy", "best_so_far"]
    assert sorted(set(zip(curves.method, curves.seed, strict=True))) == [
        ("random+none", 0), ("random+none", 1), ("tpe+median", 0), ("tpe+median", 1)
    ]  # fmt: skip
    assert len(curves) == 8
    for _, one in curves.groupby(["method", "seed"]):
        assert (one.seconds.diff().dropna() >= 0).all() and (one.seconds > 0).all()
        assert one.best_so_far.tolist() == one.accuracy.cummax().tolist()
    summary = json.loads((out / "summary.json").read_text())
    best = curves.accuracy.max()
    assert summary["best_val_acc"] == best and summary["val_se"] == pytest.approx(math.sqrt(best * (1 - best) / 100))
    assert summary["settings"]["methods"] == ["tpe+median", "random+none"] and summary["settings"]["repeats"] == 2
    assert summary["env"]["device"] == "cpu" and summary["env"]["mnist_bench"]
    for name, figures in summary["methods"].items():
        finals = curves[curves.method == name].groupby("seed").best_so_far.last()
        assert figures["final_best_median"] == pytest.approx(finals.median())
        assert figures["repeats"] == 2 and figures["trials_per_min"] > 0
    assert sum(f["reached"] for f in summary["methods"].values()) >= 1  # the best's own repeat, at least
    with Image.open(out / "anytime.png") as image:
        assert image.width > 300 and image.height > 200
    storage = optuna.storages.RDBStorage(summary["storage"])
    assert sorted(optuna.get_all_study_names(storage)) == sorted(summary["studies"])
    assert len(optuna.load_study(study_name="tpe-median-seed0", storage=storage).trials) == 2
    # The same command again reads every finished search back: nothing trains, nothing changes.
    again = runner.invoke(app, args[:-1])
    assert again.exit_code == 0 and again.stdout.count("read back") == 4, again.output
    assert pd.read_csv(out / "curves.csv").equals(curves)


def test_a_search_an_earlier_run_left_unfinished_runs_again(tmp_path: Path) -> None:
    space = load_space("default")
    settings = MethodsSettings(parse_methods("random+none"), repeats=1, trials=2, epochs=1, val_size=100)
    search = settings.search(settings.methods[0], 0, f"sqlite:///{tmp_path / 'methods.db'}")
    study = open_study(search, space, open_storage(search.storage, heartbeat_s=search.heartbeat_s))
    study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={BEST_VAL_ACC: 0.9}))
    assert finished_repeat(search, space, settings.methods[0]) is None  # 1 of 2: run again
    assert search.study not in optuna.get_all_study_names(search.storage)
    study = open_study(search, space, open_storage(search.storage, heartbeat_s=search.heartbeat_s))
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs={BEST_VAL_ACC: 0.9}))
    kept = finished_repeat(search, space, settings.methods[0])
    assert kept is not None and kept.curve.final_best == 0.9 and kept.curve.finished == 2
    with pytest.raises(MnistBenchError, match="pass --restart"):
        finished_repeat(replace(search, epochs=2), space, settings.methods[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "tpe+median,bayes+median"], "sampler='bayes' must be one of"),
        (["--methods", "tpe"], "'tpe' is not SAMPLER+PRUNER"),
        (["--repeats", "0"], "--repeats"),
    ],
)
def test_bad_methods_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["methods", *args])
    assert result.exit_code == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_stop_when_flat_replayed_over_a_finished_search_stops_where_the_search_would() -> None:
    """The best (0.98) comes at trial 2 and nothing beats it by more than its SE: the rule
    waits max(10, 0.5 x 3) = 10 finished trials after it, so a 30-trial search would have
    stopped after 13, keeping its best. A late best beyond the noise is what it would lose."""
    start = datetime(2026, 1, 1)

    def study_of(accuracies: list[float]) -> optuna.Study:
        study = optuna.create_study(direction="maximize")
        for number, accuracy in enumerate(accuracies):
            made = optuna.trial.create_trial(value=accuracy, user_attrs={BEST_VAL_ACC: accuracy})
            made.datetime_start = start + timedelta(seconds=10 * number)
            made.datetime_complete = start + timedelta(seconds=10 * (number + 1))
            study.add_trial(made)
        return study

    flat = [0.95, 0.96, 0.98] + [0.979] * 27
    replay = replay_flat_stop(study_of(flat), start, val_size=5000)
    assert replay is not None and (replay.finished, replay.seconds, replay.best) == (13, 130.0, 0.98)
    assert replay.kept and replay.full_best == 0.98
    late = replay_flat_stop(study_of([*flat[:20], 0.99, *flat[21:]]), start, val_size=5000)
    assert late is not None and late.finished == 13 and late.full_best == 0.99 and not late.kept
    assert replay_flat_stop(study_of([0.95, 0.96, 0.97, 0.98]), start, val_size=5000) is None


def test_against_the_first_method_seed_by_seed() -> None:
    """Seed 0: the first (old) method's best 0.98 is within 1 SE from 20 s, the other gets there
    at 8 s (0.4x) and ends higher; seed 1: the first is there at 10 s, the other never (slowest)."""
    first = [Repeat("a", 0, "a0", curve_of((10, 0.97), (20, 0.98))), Repeat("a", 1, "a1", curve_of((10, 0.96)))]
    other = [Repeat("b", 0, "b0", curve_of((8, 0.979), (30, 0.99))), Repeat("b", 1, "b1", curve_of((5, 0.90)))]
    assert against_first(other, first, val_size=5000) == {"vs_first_time_ratio": None, "vs_first_not_lower": 1}
    assert against_first(other[:1], first, val_size=5000) == {"vs_first_time_ratio": 0.4, "vs_first_not_lower": 1}
    assert against_first(first, first, val_size=5000) == {"vs_first_time_ratio": 1.0, "vs_first_not_lower": 2}
