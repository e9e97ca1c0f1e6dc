"""The optimizer registry: one entry is all an optimizer needs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch

from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.model import ModelConfig
from mnist_bench.optimizers import OPTIMIZERS, OptimizerSpec, Update, optimizer_spec
from mnist_bench.schedules import rate_table
from mnist_bench.search.space import SearchSpace, sample_config
from mnist_bench.training.trainer import Training


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
            return Update(params, optimizer=optimizer, rates={{"lr": config.lr}})

        OPTIMIZERS["rmsprop"] = OptimizerSpec(
            "rmsprop", "RMSprop", "L2", (1e-4, 1e-2), None, (0.0, 0.0), torch.optim.RMSprop, build, ""
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


def _build_adagrad(
    spec: OptimizerSpec, params: list[torch.Tensor], config: TrainConfig, device: torch.device
) -> Update:
    optimizer = spec.kind(params, lr=config.lr, weight_decay=config.weight_decay)
    return Update(params, optimizer=optimizer, rates={"lr": config.lr})


# An optimizer with neither momentum nor betas: one-cycle has nothing to cycle in it but its lr.
ADAGRAD = OptimizerSpec(
    "adagrad", "Adagrad", "L2", (1e-3, 1e-1), None, (0.0, 0.0), torch.optim.Adagrad, _build_adagrad, ""
)


def one_cycle_group(name: str, data: DeviceData) -> tuple[dict[str, object], set[str], tuple[float, ...]]:
    """A one-epoch one-cycle training of optimizer ``name``: its param group after the epoch,
    the group's keys before it, and the schedule's momentum column."""
    config = TrainConfig(ModelConfig((16,)), name, 0.05, batch_size=64, epochs=1, schedule="onecycle")
    training = Training(config, data)
    optimizer = training.runner.step.update.optimizer
    assert optimizer is not None
    group = optimizer.param_groups[0]
    before = set(group)
    training.run_to_end()
    table = rate_table("onecycle", config.lr, training.steps_per_epoch)
    assert table is not None and table.momentum is not None and group["lr"] == table.lr[-1]
    return group, before, table.momentum


def test_one_cycle_cycles_the_lr_alone_where_an_entry_has_nothing_else_to_cycle(
    tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry that says one-cycle cycles nothing in it gets its lr cycled, and no 'momentum'
    (or 'betas') key written into a param group that had none."""
    monkeypatch.setitem(OPTIMIZERS, "adagrad", ADAGRAD)
    group, before, _ = one_cycle_group("adagrad", tiny_data)
    assert "momentum" not in before and "betas" not in before
    assert set(group) == before


@pytest.mark.parametrize(("name", "cycled"), [("sgd", "momentum"), ("adam", "beta1"), ("adamw", "beta1")])
def test_one_cycle_cycles_what_each_shipped_entry_says(name: str, cycled: str, tiny_data: DeviceData) -> None:
    assert OPTIMIZERS[name].cycles == cycled
    group, before, momentum = one_cycle_group(name, tiny_data)
    assert set(group) == before
    betas = group.get("betas")
    assert (group["momentum"] if cycled == "momentum" else betas[0]) == momentum[-1]  # type: ignore[index]


def test_an_entry_that_names_what_its_optimizer_lacks_is_refused(
    tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=r"optimizer 'adagrad': cycles='nesterov' must be one of"):
        replace(ADAGRAD, cycles="nesterov")
    monkeypatch.setitem(OPTIMIZERS, "adagrad", replace(ADAGRAD, cycles="beta1"))
    config = TrainConfig(ModelConfig((16,)), "adagrad", 0.05, batch_size=64, epochs=1, schedule="onecycle")
    with pytest.raises(ValueError, match="one-cycle would cycle beta1, which this optimizer's update does not have"):
        Training(config, tiny_data)
