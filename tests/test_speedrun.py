from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from mnist_bench.artifacts.final import FinalData
from mnist_bench.cli import app
from mnist_bench.cli import speedrun_command as command
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.errors import UsageError
from mnist_bench.model import ModelConfig
from mnist_bench.output.speedrun import summary_lines
from mnist_bench.speedrun import recipe as recipes
from mnist_bench.speedrun.recipe import Provenance, Recipe, find_recipe, parse_target, recipe_for, shipped_recipes
from mnist_bench.speedrun.run import SpeedrunResult, SpeedrunRun, Stopwatch, process_age_s, run_speedrun
from tests.conftest import REPO

runner = CliRunner()
CONFIG = TrainConfig(ModelConfig((16,)), "sgd", 0.05, 0.9, batch_size=64, epochs=1)
PROVENANCE = Provenance(
    search="mnist-bench search --space frontier-cpu --trials 50 --seed 0",
    selection="mnist-bench promote --best 3 --epochs 4",
    machine="AMD EPYC",
    cores=2,
    date="2026-12-04",
    mnist_bench="0.2.0",
    torch="2.13.0+cpu",
    mean_acc=0.9812,
    median_train_s=11.5,
    runs=5,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data cache speedrun keeps, in the test's folder rather than the user's."""
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(tmp_path / "cache"))


def write_recipe(path: Path, **changes: Any) -> Path:
    values = Recipe("tiny", 97.0, "cpu", CONFIG, provenance=PROVENANCE).to_dict() | changes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v for k, v in values.items() if v is not None}))
    return path


def test_a_recipe_reads_back_what_it_wrote(tmp_path: Path) -> None:
    recipe = Recipe("cpu-98", 98.0, "cpu", CONFIG, precision="bf16", provenance=PROVENANCE)
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe.to_dict()))
    assert Recipe.load(path) == recipe
    bare = Recipe.from_dict(
        {"name": "mine", "target": 99, "device": "cuda", "config": {"hidden": [8], "optimizer": "adam", "lr": 1e-3}}
    )
    assert (
        bare.target == 99.0 and isinstance(bare.target, float) and bare.precision == "fp32" and bare.provenance is None
    )
    assert bare.config == TrainConfig(ModelConfig((8,)), "adam", 1e-3)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(steps=3), "unknown key 'steps'"),
        (dict(target=95), "target=95 must be one of 97, 98, 99, 99.5"),
        (dict(target="98"), "target='98' must be one of"),
        (dict(target=True), "target=True must be one of"),
        (dict(device="tpu"), "device='tpu' must be one of cpu, cuda"),
        (dict(precision="fp8"), "precision='fp8' must be one of"),
        (dict(name=""), "name='' must be a non-empty string"),
        (dict(config={"hidden": [8], "optimizer": "sgd", "lr": 0.1, "widths": 3}), "config: unknown key 'widths'"),
        (dict(config={"hidden": [8], "optimizer": "sgd"}), "config: the key 'lr' is missing"),
        (dict(config={"hidden": [8], "optimizer": "sgd", "lr": -1}), "config: lr=-1 must be a positive number"),
        (dict(config=[1, 2]), "config must be a JSON object, not list"),
        (dict(provenance={"search": "x"}), "provenance: the key 'selection' is missing"),
        (dict(provenance={**vars(PROVENANCE), "cores": "two"}), "provenance: cores='two' must be a JSON number"),
        (dict(provenance={**vars(PROVENANCE), "stars": 5}), "provenance: unknown key 'stars'"),
    ],
)
def test_a_bad_recipe_names_its_file_and_key(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    path = write_recipe(tmp_path / "bad.json", **changes)
    with pytest.raises(UsageError, match="bad.json") as caught:
        Recipe.load(path)
    assert message in str(caught.value)


def test_a_recipe_file_missing_a_key_or_not_json_is_a_usage_error(tmp_path: Path) -> None:
    path = write_recipe(tmp_path / "bad.json")
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "device"}))
    with pytest.raises(UsageError, match=r"bad.json: the key 'device' is missing"):
        Recipe.load(path)
    path.write_text("{not json")
    with pytest.raises(UsageError, match=r"bad.json is not valid JSON"):
        Recipe.load(path)
    with pytest.raises(UsageError, match=r"recipe file .*nowhere.json not found"):
        find_recipe(str(tmp_path / "nowhere.json"))


@pytest.mark.parametrize("text, target", [("97", 97.0), ("98", 98.0), ("98.0", 98.0), ("99.5", 99.5), ("99.50", 99.5)])
def test_targets_are_read_as_people_write_them(text: str, target: float) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["95", "100", "ninety-eight", "nan", "98%"])
def test_other_targets_are_refused_naming_the_targets(text: str) -> None:
    with pytest.raises(UsageError, match=rf"--target {text}: must be one of 97, 98, 99, 99.5"):
        parse_target(text)


def test_the_registry_lists_each_file_of_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "recipes"
    write_recipe(folder / "cpu-98.json", name="cpu-98", target=98.0)
    write_recipe(folder / "cuda-99.json", name="cuda-99", target=99.0, device="cuda")
    (folder / "README.md").write_text("not a recipe")
    shipped = shipped_recipes(folder)
    assert list(shipped) == ["cpu-98", "cuda-99"] and shipped["cuda-99"].device == "cuda"
    assert recipe_for(98.0, "cpu", folder=folder).name == "cpu-98"
    assert find_recipe("cuda-99", folder=folder).target == 99.0
    assert shipped_recipes(tmp_path / "absent") == {}


@pytest.mark.parametrize(
    "name, changes, message",
    [
        ("cpu-98.json", dict(name="other"), "name='other' must be its file's name, 'cpu-98'"),
        ("cpu-98.json", dict(name="cpu-98", provenance=None), "the key 'provenance' is missing"),
        ("twin.json", dict(name="twin"), "cpu-98 is the recipe for 98% on cpu already"),
    ],
)
def test_the_registry_refuses_what_could_not_be_picked(
    tmp_path: Path, name: str, changes: dict[str, Any], message: str
) -> None:
    folder = tmp_path / "recipes"
    write_recipe(folder / "cpu-98.json", name="cpu-98", target=98.0)
    write_recipe(folder / name, target=98.0, **changes)
    with pytest.raises(UsageError, match=message):
        shipped_recipes(folder)


def test_a_missing_pair_names_the_shipped_recipes_and_one_to_run_on_purpose(tmp_path: Path) -> None:
    folder = tmp_path / "recipes"
    write_recipe(folder / "cpu-98.json", name="cpu-98", target=98.0)
    write_recipe(folder / "cpu-99.json", name="cpu-99", target=99.0)
    with pytest.raises(UsageError) as caught:
        recipe_for(98.0, "cuda", folder=folder)
    assert str(caught.value) == (
        "no recipe ships for 98% on cuda (shipped: cpu-98 (98% on cpu), cpu-99 (99% on cpu)); run one on purpose "
        "with --recipe cpu-98, or a recipe file of your own with --recipe FILE.json"
    )
    with pytest.raises(UsageError, match=r"shipped: none yet\); pass a recipe file of your own"):
        recipe_for(98.0, "cpu", folder=tmp_path / "absent")
    with pytest.raises(UsageError, match=r"recipe 'gpu-98' is not a shipped recipe \(shipped: cpu-98"):
        find_recipe("gpu-98", folder=folder)


def test_the_shipped_recipes_load_and_the_package_ships_their_folder() -> None:
    for recipe in shipped_recipes().values():  # none may ship yet: then this checks the registry reads nothing
        assert recipe.provenance is not None and recipe.config.seed == 0
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert f"{recipes.SHIPPED_DIR}/*.json" in package_data["mnist_bench.speedrun"]


def speedrun_args(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    recipe = write_recipe(tmp_path / "tiny.json")
    return [
        "speedrun", "--recipe", str(recipe), "--data-dir", str(data), "--no-verify", "--device", "cpu", *extra,
    ]  # fmt: skip


def test_speedrun_prints_the_runs_and_the_verdict_and_writes_json(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "out" / "speedrun.json"
    result = runner.invoke(app, speedrun_args(tmp_path, tiny_mnist, "--runs", "2", "--seed", "5", "--json", str(out)))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Recipe tiny (for 97% on cpu): 784-16-10, 1 epoch, batch 64, sgd lr 0.05 momentum 0.9" in text
    assert "run 1/2, seed 5" in text and "run 2/2, seed 6" in text
    assert "training s" in text and "test accuracy %" in text
    assert "test accuracy: mean " in text and " ± " in text and "training: median " in text
    verdicts = [line for line in text.splitlines() if line.startswith(("reached: mean ", "not reached: mean "))]
    assert len(verdicts) == 1
    assert "wall time: " in text and "from process start" in text
    written = json.loads(out.read_text())
    keys = {"target", "recipe", "device", "mean_acc", "std_acc", "median_train_s", "min_train_s", "max_train_s"}
    assert keys | {"reached", "runs", "wall_s", "environment"} <= set(written)
    assert written["target"] == 97.0 and written["recipe"]["name"] == "tiny" and written["device"] == "cpu"
    assert [run["seed"] for run in written["runs"]] == [5, 6]
    assert all(0 <= run["test_acc"] <= 1 and run["train_s"] > 0 for run in written["runs"])
    assert written["min_train_s"] <= written["median_train_s"] <= written["max_train_s"] <= written["wall_s"]
    assert written["environment"]["mnist_bench"] and written["environment"]["torch"] == torch.__version__
    assert written["reached"] == (round(written["mean_acc"] * 100, 6) >= 97.0)


def test_an_explicit_target_is_the_verdicts(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "speedrun.json"
    result = runner.invoke(
        app, speedrun_args(tmp_path, tiny_mnist, "--runs", "1", "--target", "99.5", "--json", str(out))
    )
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["target"] == 99.5 and written["std_acc"] is None and " ± " not in result.stdout
    assert "< 99.5%" in result.stdout or ">= 99.5%" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "95"], "--target 95: must be one of 97, 98, 99, 99.5"),
        (["--runs", "0"], "--runs 0: must be at least 1"),
        (["--recipe", "gpu-98"], "recipe 'gpu-98' is not a shipped recipe (shipped: cpu-98 (98% on cpu))"),
        (["--target", "99"], "no recipe ships for 99% on cpu (shipped: cpu-98 (98% on cpu)); run one on purpose "
                             "with --recipe cpu-98"),
        (["--recipe", "{bad}"], "bad.json: device='tpu' must be one of cpu, cuda"),
    ],
)  # fmt: skip
def test_bad_speedrun_input_is_one_line_and_exit_2(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    shipped = tmp_path / "shipped"
    write_recipe(shipped / "cpu-98.json", name="cpu-98", target=98.0)
    monkeypatch.setattr(recipes, "shipped_folder", lambda: shipped)
    bad = write_recipe(tmp_path / "bad.json", device="tpu")
    filled = [arg.replace("{bad}", str(bad)) for arg in args]
    result = runner.invoke(app, ["speedrun", "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu", *filled])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert message in result.stderr and "Traceback" not in result.output


def test_speedrun_picks_the_shipped_recipe_and_recipes_lists_it(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "shipped"
    write_recipe(shipped / "cpu-98.json", name="cpu-98", target=98.0)
    monkeypatch.setattr(recipes, "shipped_folder", lambda: shipped)
    listed = runner.invoke(app, ["recipes"])
    assert listed.exit_code == 0, listed.output
    assert "cpu-98" in listed.stdout and "784-16-10" in listed.stdout and "98.12% in 11.5 s" in listed.stdout
    ran = runner.invoke(
        app, ["speedrun", "--runs", "1", "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    )
    assert ran.exit_code == 0, ran.output
    assert "Recipe cpu-98 (for 98% on cpu)" in ran.stdout
    assert "% >= 98%" in ran.stdout or "% < 98%" in ran.stdout


def test_ctrl_c_prints_the_runs_done_and_exits_130(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = command.run_speedrun

    def interrupted_after_the_first(*args: Any, stop: threading.Event, on_run: Any, **kwargs: Any) -> SpeedrunResult:
        def heard(run: SpeedrunRun) -> None:
            on_run(run)
            stop.set()  # as Ctrl-C does: the next run stops at its next batch

        return real(*args, stop=stop, on_run=heard, **kwargs)

    monkeypatch.setattr(command, "run_speedrun", interrupted_after_the_first)
    out = tmp_path / "speedrun.json"
    result = runner.invoke(app, speedrun_args(tmp_path, tiny_mnist, "--runs", "3", "--json", str(out)))
    assert result.exit_code == 130, result.output
    assert result.stderr == "Interrupted after 1 of 3 runs: no verdict.\n"
    assert "run 1/3, seed 0" in result.stdout and "reached" not in result.stdout and not out.exists()


def test_runs_of_one_seed_give_one_accuracy(tiny_mnist: Path) -> None:
    data = FinalData.load(tiny_mnist, torch.device("cpu"), verify=False).device_data
    recipe = Recipe("tiny", 97.0, "cpu", CONFIG)
    result = run_speedrun(recipe, data, [3, 3], target=97.0, runtime=Runtime())
    assert [run.seed for run in result.runs] == [3, 3] and not result.interrupted
    assert result.runs[0].test_acc == result.runs[1].test_acc


def test_the_summary_never_shows_a_missed_mean_as_the_target() -> None:
    recipe = Recipe("tiny", 98.0, "cpu", CONFIG)
    missed = SpeedrunResult(
        recipe, 98.0, "cpu", (SpeedrunRun(0, 1.0, 0.9799), SpeedrunRun(1, 2.0, 0.9800), SpeedrunRun(2, 3.0, 0.9800))
    )
    assert not missed.reached and missed.median_train_s == 2.0
    assert summary_lines(missed)[-1] == "not reached: mean 97.997% < 98%"
    exact = SpeedrunResult(recipe, 98.0, "cpu", (SpeedrunRun(0, 1.0, 0.9801), SpeedrunRun(1, 1.0, 0.9799)))
    assert exact.reached and summary_lines(exact)[-1] == "reached: mean 98.00% >= 98%"
    one = SpeedrunResult(recipe, 98.0, "cpu", (SpeedrunRun(0, 1.0, 0.99),))
    assert one.std_acc is None and summary_lines(one)[0] == "test accuracy: mean 99.00% over 1 run"


def test_the_wall_clock_counts_from_the_process_start(tmp_path: Path) -> None:
    age = process_age_s()
    if sys.platform == "linux":
        assert age is not None and 0 <= age < time.monotonic() + 1
    stat = tmp_path / "stat"
    ticks = int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK")) - 10 * os.sysconf("SC_CLK_TCK")
    stat.write_text(f"42 (a (strange) name) S {' '.join(['1'] * 18)} {ticks} 0 0\n")
    assert 9 <= process_age_s(stat) <= 60  # type: ignore[operator]
    assert process_age_s(tmp_path / "absent") is None
    assert Stopwatch.after(None).since == "command start" and Stopwatch.after(5.0).seconds() >= 5.0


def test_the_speedrun_command_imports_no_optuna_pandas_or_search(tmp_path: Path, tiny_mnist: Path) -> None:
    """Its start-up is part of the wall time it reports: a real run, in a fresh process."""
    args = speedrun_args(tmp_path, tiny_mnist, "--runs", "1")
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mnist_bench.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = ('optuna', 'pandas', 'sqlalchemy', 'matplotlib', 'scipy', 'plotly', 'mnist_bench.search', "
        "'mnist_bench.storage', 'mnist_bench.output.console')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MNIST_BENCH_CACHE_DIR": str(tmp_path / "c")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_guides_example_is_a_recipe() -> None:
    guide = (REPO / "docs" / "guide.md").read_text()
    example = guide.split("### Recipe format", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    recipe = Recipe.from_dict(json.loads(example), source="docs/guide.md")
    assert recipe.name == "cpu-98" and recipe.provenance is not None
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_the_console_script_ends_promptly_after_writing_everything(tmp_path: Path, tiny_mnist: Path) -> None:
    """In its own process speedrun exits without torch's teardown: its output and JSON are whole first."""
    recipe, out = write_recipe(tmp_path / "r.json"), tmp_path / "run.json"
    args = ["--recipe", str(recipe), "--runs", "1", "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mnist_bench", "speedrun", *args, "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(f"Written to {out}") and "wall time:" in done.stdout
    assert json.loads(out.read_text())["runs"][0]["seed"] == 0


def test_a_studys_trial_becomes_a_recipe_with_its_provenance(tmp_path: Path, tiny_mnist: Path) -> None:
    """How a shipped recipe is found: an accuracy-and-time search, then `speedrun --study --trial --save-recipe`."""
    studies = tmp_path / "studies"
    (tmp_path / "fast.toml").write_text('base = "speed"\nwidth = [8, 32]\nepochs = [1, 2]\n')
    where = ["--studies-dir", str(studies), "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    search = ["search", "--space", str(tmp_path / "fast.toml"), "--objective", "accuracy,time", "--pruner", "none"]
    found = runner.invoke(app, [*search, "--trials", "3", "--seed", "0", "--val-size", "100", *where])
    assert found.exit_code == 0, found.output
    saved = tmp_path / "cpu-97.json"
    args = ["speedrun", "--study", "mnist-mlp", "--trial", "1", "--target", "97", "--runs", "2"]
    result = runner.invoke(app, [*args, "--save-recipe", str(saved), *where])
    assert result.exit_code == 0, result.output
    recipe = Recipe.load(saved)
    assert recipe.name == "cpu-97" and recipe.target == 97.0 and recipe.device == "cpu"
    assert recipe.provenance is not None and recipe.provenance.runs == 2
    made_by = "mnist-bench search --space (a file of its own) --objective accuracy,time --sampler tpe --pruner none"
    assert recipe.provenance.search.startswith(made_by)
    assert recipe.provenance.selection == "mnist-bench speedrun --study mnist-mlp --trial 1 --target 97 --runs 2"
    rerun = runner.invoke(app, ["speedrun", "--recipe", str(saved), "--runs", "2", *where[2:]])
    assert rerun.exit_code == 0, rerun.output
    assert f"{recipe.provenance.mean_acc * 100:.2f}" in rerun.output  # the same two seeds, the same accuracy


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trial", "1"], "--trial: picks a trial of --study, which is not given"),
        (["--study", "s", "--recipe", "cpu-98"], "--recipe and --study: run a recipe, or a study's trial as one"),
    ],
)
def test_a_trial_without_its_study_or_beside_a_recipe_is_a_usage_error(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    result = runner.invoke(app, ["speedrun", *extra, "--studies-dir", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output
