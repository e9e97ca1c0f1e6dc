"""Every registered choice through the whole user path, on tiny real IDX files.

Each optimizer, schedule and augmentation is a name in one registry; a name that one
command compares by hand fails in the one place no test goes (an AdamW winner once
made ``best`` raise KeyError). So each registered name, fixed in a space file, goes
through ``search``, ``best``, ``best --retrain``, ``baselines --study``, ``predict``,
``evaluate`` and ``train``; each sampler, pruner and objective through ``search`` and
``best`` (a second objective with each pruner that judges several); each precision and
steps mode through ``train``, where the CPU can run it.
All are read from the registries: a new entry is tested here without a line of this
file changing.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mnist_bench.artifacts import figures
from mnist_bench.augment import AUGMENTS
from mnist_bench.cli import app, common
from mnist_bench.config import PRECISIONS, STEPS, Runtime, precision_spec, steps_spec
from mnist_bench.data import load_split
from mnist_bench.optimizers import OPTIMIZERS
from mnist_bench.schedules import SCHEDULES
from mnist_bench.search.objectives import FIRST, OBJECTIVES, objective_spec
from mnist_bench.search.pruners import PRUNERS, default_pruner, multi_objective_pruners
from mnist_bench.search.samplers import SAMPLERS
from mnist_bench.search.study import SearchSettings
from mnist_bench.storage.rdb import default_storage

runner = CliRunner()
# (the space key and the train option that choose it, the registry)
REGISTRIES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "augment": AUGMENTS}
CHOICES = [(kind, name) for kind, registry in REGISTRIES.items() for name in registry]
# A search's choices (its --sampler, --pruner, --objective), and a training's runtime ones.
SEARCH_REGISTRIES = {"sampler": SAMPLERS, "pruner": PRUNERS, "objective": OBJECTIVES}
SEARCH_DEFAULTS = {"sampler": SearchSettings.sampler, "pruner": default_pruner(1), "objective": FIRST}
# The defaults, then each other name with the defaults beside it: every name is searched
# with, and none twice (tpe, median and accuracy alone would be one search three times). A
# second objective comes with the pruner a search of several gets where it names none
# (multi-objective asha), and each other pruner that judges several objectives with one.
SEARCH_CASES = (
    [SEARCH_DEFAULTS]
    + [
        {**SEARCH_DEFAULTS, kind: name, **({"pruner": default_pruner(2)} if kind == "objective" else {})}
        for kind, registry in SEARCH_REGISTRIES.items()
        for name in registry
        if name != SEARCH_DEFAULTS[kind]
    ]
    + [
        {**SEARCH_DEFAULTS, "pruner": name, "objective": next(o for o in OBJECTIVES if o != FIRST)}
        for name in multi_objective_pruners()
        if name != default_pruner(2)
    ]
)
RUNTIME_REGISTRIES = {"precision": PRECISIONS, "steps": STEPS}
RUNTIME_CHOICES = [(kind, name) for kind, registry in RUNTIME_REGISTRIES.items() for name in registry]


def ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


@pytest.mark.parametrize(("kind", "name"), CHOICES, ids=[f"{k}-{n}" for k, n in CHOICES])
def test_a_registered_choice_goes_through_every_command(kind: str, name: str, tmp_path: Path, tiny_mnist: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(f'depth = [1, 1]\nwidth = [16, 16]\nbatch_sizes = [64]\n{kind}s = ["{name}"]\n')
    data = ["--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    common = ["--studies-dir", str(tmp_path / "studies"), *data]
    ok(["search", "--space", str(space), "--trials", "1", "--epochs", "1", "--seed", "0", "--val-size", "100", *common])
    ok(["best", *common])
    retrained = ok(["best", "--retrain", "--seeds", "1", "--epochs", "1", *common])
    assert "test accuracy" in retrained
    folder = next((tmp_path / "studies" / "mnist-mlp").glob("trial-*"))
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["config"][kind] == name  # the checkpoint says the choice it trained with
    if kind == "optimizer":  # baselines trains its five tutorial nets too: once per optimizer is enough
        described = ok(["baselines", "--seeds", "1", "--study", "mnist-mlp", *common])
        assert "mnist-mlp winner" in described and OPTIMIZERS[name].display in described
    evaluated = ok(["evaluate", str(folder), *data[:-2]])
    assert "test accuracy" in evaluated
    test = load_split(tiny_mnist, "test", verify=False)
    Image.fromarray(test.images[0].numpy()).save(tmp_path / "digit.png")
    predicted = json.loads(ok(["predict", str(folder), str(tmp_path / "digit.png"), "--json"]))
    assert predicted[0]["label"] in range(10)
    option = {"optimizer": ["--optimizer", name], "schedule": ["--schedule", name], "augment": ["--augment", name]}
    ok(["train", "--layers", "16", "--epochs", "1", "--lr", "0.01", *option[kind], "--out", str(tmp_path / "t"), *data])
    assert json.loads((tmp_path / "t" / "checkpoint.json").read_text())["config"][kind] == name


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_an_unknown_choice_is_one_line_naming_the_known_ones(kind: str, tmp_path: Path, tiny_mnist: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(f'{kind}s = ["nope"]\n')
    result = runner.invoke(app, ["search", "--space", str(space), "--data-dir", str(tiny_mnist), "--no-verify"])
    assert result.exit_code != 0 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert all(name in result.stderr for name in REGISTRIES[kind])


def objectives_of(name: str) -> list[str]:
    """The objectives a search names ``name`` in: every search optimizes FIRST, first."""
    return [FIRST] if name == FIRST else [FIRST, name]


@pytest.mark.parametrize("case", SEARCH_CASES, ids=["-".join(case.values()) for case in SEARCH_CASES])
def test_every_registered_sampler_pruner_and_objective_searches_and_picks_a_best(
    case: dict[str, str], tmp_path: Path, tiny_mnist: Path
) -> None:
    missing = SAMPLERS[case["sampler"]].missing()
    if missing:
        pytest.skip(f"sampler {case['sampler']} needs {', '.join(missing)}")
    space = tmp_path / "space.toml"
    space.write_text('depth = [1, 1]\nwidth = [16, 16]\nbatch_sizes = [64]\noptimizers = ["adam"]\n')
    common_args = ["--studies-dir", str(tmp_path / "studies"), "--data-dir", str(tiny_mnist), "--no-verify"]
    common_args += ["--device", "cpu"]
    objectives = objectives_of(case["objective"])
    chosen = ["--sampler", case["sampler"], "--objective", ",".join(objectives)]
    if case["pruner"] != default_pruner(len(objectives)):  # else named by no option: the default's path
        chosen += ["--pruner", case["pruner"]]
    search = ["search", "--space", str(space), "--trials", "2", "--epochs", "1", "--seed", "0", "--val-size", "100"]
    ok([*search, *chosen, *common_args])
    shown = ok(["best", *common_args])
    assert "validation accuracy" in shown
    study = optuna.load_study(study_name="mnist-mlp", storage=default_storage(tmp_path / "studies"))
    assert len(study.trials) == 2
    # The study's record of its choices, its directions and each complete trial's values.
    assert (study.user_attrs["sampler"], study.user_attrs["pruner"]) == (case["sampler"], case["pruner"])
    assert study.user_attrs["objectives"] == objectives
    assert [d.name.lower() for d in study.directions] == [objective_spec(o).direction for o in objectives]
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert complete and all(len(t.values) == len(objectives) for t in complete)


def touched(path: Path) -> Path:
    path.touch()
    return path


def cpu_refusal(kind: str, name: str) -> str | None:
    """Why a CPU cannot train in precision ``name``; None where it can (every steps mode runs)."""
    if kind != "precision":
        return None
    try:
        precision_spec(name).check(torch.device("cpu"))
    except ValueError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(("kind", "name"), RUNTIME_CHOICES, ids=[f"{k}-{n}" for k, n in RUNTIME_CHOICES])
def test_a_registered_precision_or_steps_mode_trains_where_the_cpu_can(
    kind: str, name: str, tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtimes: list[Runtime] = []
    real = common.trusted

    def recorded(device: torch.device, runtime: Runtime, parallel: int, **kwargs: object) -> tuple[Runtime, int]:
        runtimes.append(runtime)
        return real(device, runtime, parallel, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(common, "trusted", recorded)
    # Drawing the checkpoint's two figures takes most of a tiny training's time; the
    # optimizer cases above draw them, so here each is only a file.
    for figure in ("confusion_png", "predictions_png"):
        monkeypatch.setattr(figures, figure, lambda *args, **kwargs: touched(args[-1]))
    data = ["--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    train = ["train", "--layers", "16", "--epochs", "1", "--lr", "0.01"]
    result = runner.invoke(app, [*train, f"--{kind}", name, "--out", str(tmp_path / "t"), *data])
    assert "Traceback" not in result.output
    refusal = cpu_refusal(kind, name)
    if refusal is not None:  # tf32 is CUDA's: refused up front, in one line
        assert result.exit_code == 1 and result.stderr == f"Error: --precision {name}: {refusal}\n"
        return
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.stdout
    (runtime,) = runtimes
    if kind == "precision":
        assert runtime.precision == name
    else:
        assert runtime.graphs == steps_spec(name).graphs


@pytest.mark.parametrize("kind", [*SEARCH_REGISTRIES, *RUNTIME_REGISTRIES])
def test_an_unknown_search_or_runtime_choice_is_a_usage_error_naming_the_known_ones(
    kind: str, tmp_path: Path, tiny_mnist: Path
) -> None:
    registry = {**SEARCH_REGISTRIES, **RUNTIME_REGISTRIES}[kind]
    unknown = f"{FIRST},nope" if kind == "objective" else "nope"
    args = ["search", f"--{kind}", unknown, "--studies-dir", str(tmp_path / "studies"), "--data-dir", str(tiny_mnist)]
    result = runner.invoke(app, [*args, "--no-verify", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ") and "Traceback" not in result.output
    assert all(name in result.stderr for name in registry)
    assert not (tmp_path / "studies").exists()  # refused before a study was made
