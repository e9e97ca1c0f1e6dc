"""The optimizer registry: one entry is all an optimizer needs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from mnist_bench.config import TrainConfig
from mnist_bench.model import ModelConfig
from mnist_bench.optimizers import OPTIMIZERS, optimizer_spec
from mnist_bench.search.space import SearchSpace, sample_config


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_optimizer_is_sampled_from_the_ranges_its_entry_declares(name: str) -> None:
    spec = OPTIMIZERS[name]
    space = SearchSpace(optimizers=(name,))
    assert {field: getattr(space, field) for field in spec.space_ranges()} == spec.space_ranges()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    config = sample_config(trial, space, epochs=1, seed=0)
    low, high = spec.lr_range
    assert config.optimizer == name and low <= config.lr <= high
    assert set(trial.params) - {"n_layers", "width_0", "width_1", "width_2", "width_3", "optimizer", "batch_size"} == {
        f for f, (lo, hi) in spec.space_ranges().items() if hi > lo
    }


def test_an_unknown_optimizer_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"optimizer='rmsprop' must be one of \('sgd', 'adam', 'adamw'\)"):
        optimizer_spec("rmsprop")
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        TrainConfig(ModelConfig((8,)), "rmsprop", 0.01)


def test_one_registry_entry_adds_an_optimizer_to_search_and_retrain(tmp_path: Path, tiny_mnist: Path) -> None:
    """A new optimizer, registered before the CLI is imported, and nothing else: the space
    samples it from its own ranges, the search trains it, the winner retrains and saves."""
    (tmp_path / "space.toml").write_text(
        'depth = [1, 1]\nwidth = [16, 16]\nbatch_sizes = [64]\noptimizers = ["rmsprop"]\n'
    )
    script = textwrap.dedent(
        f"""
        import sys, torch
        from mnist_bench import optimizers
        from mnist_bench.optimizers import OPTIMIZERS, OptimizerSpec, Update

        def build(spec, params, config, device):
            optimizer = spec.kind(params, lr=config.lr, weight_decay=config.weight_decay)
            return Update(params, optimizer=optimizer, rates={{"lr": config.lr, "momentum": config.momentum}})

        OPTIMIZERS["rmsprop"] = OptimizerSpec(
            "rmsprop", "RMSprop", "L2", (1e-4, 1e-2), None, (0.0, 0.0), torch.optim.RMSprop, build
        )
        from mnist_bench.cli import app
        common = ["--studies-dir", {str(tmp_path / "studies")!r}, "--data-dir", {str(tiny_mnist)!r},
                  "--no-verify", "--device", "cpu"]
        for args in (["search", "--space", {str(tmp_path / "space.toml")!r}, "--trials", "1", "--epochs", "1",
                      "--val-size", "100", "--seed", "0"], ["best", "--retrain", "--seeds", "1", "--epochs", "1"]):
            try:
                app(args + common)
            except SystemExit as exit:
                if exit.code:
                    sys.exit(exit.code)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="mnist-mlp", storage=f"sqlite:///{tmp_path / 'studies' / 'mnist-bench.db'}")
    assert set(study.best_trial.params) >= {"optimizer", "rmsprop_lr"}
    meta = json.loads(next((tmp_path / "studies" / "mnist-mlp").glob("trial-*/checkpoint.json")).read_text())
    assert meta["config"]["optimizer"] == "rmsprop"
