"""The sampler registry: each entry builds its sampler; an unknown name is an error, never TPE."""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from mnist_bench.artifacts import figures
from mnist_bench.cli import app
from mnist_bench.errors import MnistBenchError
from mnist_bench.search.samplers import SAMPLERS, SamplerSpec, make_sampler
from mnist_bench.search.space import SearchSpace, sample_config
from mnist_bench.search.study import SearchSettings
from mnist_bench.storage.rdb import default_storage

# Conditional parameters of every kind (widths by depth, rates by optimizer), and small, so
# a Gaussian process proposes in a second or so.
CONDITIONAL = SearchSpace(depth=(1, 3), width=(8, 64), batch_sizes=(64,))

PRUNED = optuna.trial.TrialState.PRUNED


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("parallel", [1, 3])
def test_each_registered_sampler_builds_quietly(name: str, parallel: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TPE's constant liar is experimental: its warning is filtered where it is built
        sampler = make_sampler(name, 0, parallel=parallel)
    assert isinstance(sampler, optuna.samplers.BaseSampler)


def test_an_unknown_sampler_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"sampler='cmaes' must be one of \('tpe', 'random', 'nsga2', 'gp'\)"):
        make_sampler("cmaes", 0)


def test_a_sampler_of_one_objective_is_refused_for_several(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(seed: int | None, parallel: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)

    monkeypatch.setitem(SAMPLERS, "single", SamplerSpec("single", "one objective only", build, multi_objective=False))
    settings = dict(study="t", storage="sqlite://", trials=1, epochs=1, sampler="single")
    assert SearchSettings(**settings).sampler == "single"  # type: ignore[arg-type]
    with pytest.raises(MnistBenchError, match="--sampler single: takes one objective, not accuracy,params"):
        SearchSettings(**settings, objectives=("accuracy", "params"))  # type: ignore[arg-type]


def test_a_sampler_whose_module_is_missing_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(seed: int | None, parallel: int) -> optuna.samplers.BaseSampler:
        raise AssertionError("never built")

    monkeypatch.setitem(SAMPLERS, "needy", SamplerSpec("needy", "needs a module", build, needs=("no_such_module_x",)))
    with pytest.raises(MnistBenchError, match="--sampler needy: needs no_such_module_x, not installed here"):
        SearchSettings(study="t", storage="sqlite://", trials=1, epochs=1, sampler="needy")


def _whole_space_study(sampler: optuna.samplers.BaseSampler, n: int, *, whole_space: bool = True) -> optuna.Study:
    """``n`` trials of CONDITIONAL through ask/tell, scored by a cheap stand-in for training."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(n):
        trial = study.ask()
        config = sample_config(trial, CONDITIONAL, epochs=1, seed=0, whole_space=whole_space)
        study.tell(trial, math.log(sum(config.model.hidden)) - abs(math.log10(config.lr) + 2))
    return study


def test_gp_models_every_parameter_and_repeats_its_seed(caplog: pytest.LogCaptureFixture) -> None:
    assert SAMPLERS["gp"].whole_space and not any(spec.whole_space for spec in SAMPLERS.values() if spec.name != "gp")
    optuna.logging.enable_propagation()  # GPSampler says it fell back to random draws in a log record
    try:
        with caplog.at_level(logging.WARNING, logger="optuna"):
            # 10 random trials, then 2 proposed by the Gaussian process.
            first, again = (_whole_space_study(make_sampler("gp", 7), 12) for _ in range(2))
    finally:
        optuna.logging.disable_propagation()
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert not [r for r in caplog.records if "independent" in r.getMessage() or "dynamic" in r.getMessage()]
    every = {"n_layers", "width_0", "width_1", "width_2", "optimizer", "sgd_lr", "sgd_momentum", "adam_lr"}
    assert all(set(t.params) == every | {"batch_size"} for t in first.trials)  # one batch size: not searched
    assert set(first.sampler.infer_relative_search_space(first, first.trials[-1])) == every
    # Asked only what each config uses, the Gaussian process would see only what all share.
    partial = _whole_space_study(optuna.samplers.RandomSampler(seed=7), 12, whole_space=False)
    shared = set(optuna.samplers.GPSampler().infer_relative_search_space(partial, partial.trials[-1]))
    assert shared < every and "width_1" not in shared


def _mostly_pruned() -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """10 finished trials of one parameter, 3 completed and 7 pruned after reporting, and an 11th asked."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    for i in range(10):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        trial.report(1 - abs(x - 0.3), 1)
        study.tell(trial, 1 - abs(x - 0.3) if i % 3 == 0 else None, state=None if i % 3 == 0 else PRUNED)
    return study, study._storage.get_trial(study.ask()._trial_id)


def test_gp_models_once_10_trials_finished_though_most_were_pruned() -> None:
    # Under asha a few trials in 50 complete; Optuna's GPSampler alone would still be drawing at random.
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    assert optuna.samplers.GPSampler(seed=0).sample_relative(*_mostly_pruned(), space) == {}  # waits for 10 complete
    proposed = make_sampler("gp", 0).sample_relative(*_mostly_pruned(), space)
    assert set(proposed) == {"x"} and abs(proposed["x"] - 0.3) < 0.2
    assert make_sampler("gp", 0).sample_relative(*_mostly_pruned(), space) == proposed  # seeded


def test_a_gp_trial_of_one_layer_retrains_to_one_layer(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for figure in ("confusion_png", "predictions_png"):  # most of a tiny retraining's time, and not tested here
        monkeypatch.setattr(figures, figure, lambda *args, **kwargs: args[-1])
    space = tmp_path / "space.toml"
    space.write_text("depth = [1, 2]\nwidth = [8, 16]\nbatch_sizes = [64]\n")
    common = ["--studies-dir", str(tmp_path / "studies"), "--data-dir", str(tiny_mnist), "--no-verify"]
    common += ["--device", "cpu"]
    search = ["search", "--space", str(space), "--trials", "3", "--epochs", "1", "--seed", "1", "--val-size", "100"]
    runner = CliRunner()
    result = runner.invoke(app, [*search, "--sampler", "gp", "--pruner", "none", *common])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="mnist-mlp", storage=default_storage(tmp_path / "studies"))
    (trial, *_) = [t for t in study.trials if t.params["n_layers"] == 1]  # seed 1 draws one
    assert {"width_1", "sgd_lr", "adam_lr"} <= set(trial.params)  # the whole space, stored
    retrain = ["best", "--trial", str(trial.number), "--retrain", "--seeds", "1", "--epochs", "1"]
    result = runner.invoke(app, [*retrain, *common])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "studies" / "mnist-mlp").glob("trial-*")
    config = json.loads((folder / "checkpoint.json").read_text())["config"]
    assert config["hidden"] == [trial.params["width_0"]]
    optimizer = trial.params["optimizer"]
    assert (config["optimizer"], config["lr"]) == (optimizer, trial.params[f"{optimizer}_lr"])
