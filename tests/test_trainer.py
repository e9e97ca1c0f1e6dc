from __future__ import annotations

import dataclasses
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.model import ModelConfig, build_mlp
from mnist_bench.training.trainer import Training, accuracy, train


def config(**overrides: object) -> TrainConfig:
    values: dict[str, object] = dict(model=ModelConfig((32,)), optimizer="adam", lr=3e-3, batch_size=32, epochs=3)
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_learns_the_synthetic_digits(tiny_data: DeviceData) -> None:
    result = train(config(), tiny_data)
    assert result.epochs_run == 3 and not result.stopped_early and result.diverged is None
    assert result.best_acc > 0.8  # chance is 0.1
    assert result.samples_seen == 3 * 500 and result.samples_per_s > 0
    assert accuracy(result.model, tiny_data.x_eval, tiny_data.y_eval) == result.final_acc


def test_same_seed_same_result_other_seed_other_weights(tiny_data: DeviceData) -> None:
    a, b = train(config(seed=7), tiny_data), train(config(seed=7), tiny_data)
    c = train(config(seed=8), tiny_data)
    assert a.val_accs == b.val_accs and a.train_loss == b.train_loss
    assert a.train_loss != c.train_loss


def test_sgd_with_momentum_learns(tiny_data: DeviceData) -> None:
    result = train(config(optimizer="sgd", lr=0.05, momentum=0.9), tiny_data)
    assert result.best_acc > 0.8


def test_divergence_is_detected_not_raised(tiny_data: DeviceData) -> None:
    result = train(config(optimizer="sgd", lr=1e6, momentum=0.9, epochs=5), tiny_data)
    assert result.diverged is not None and "loss became" in result.diverged
    assert result.epochs_run < 5 and not math.isfinite(result.train_loss[-1])


def test_divergence_inside_an_epoch_ends_training_at_that_chunk(tiny_data: DeviceData) -> None:
    """With reports inside an epoch, a loss gone non-finite is caught after the chunk it broke
    in: the trial is never judged on a broken model, and no partial epoch enters the records."""
    run = Training(config(optimizer="sgd", lr=1e6, momentum=0.9, epochs=5), tiny_data, reports_per_epoch=4)
    run.run_to_end()
    assert run.diverged == "training loss became nan in epoch 1" and run.done
    assert run.mid_epoch and run.reports < 4 and run.samples < 500  # it broke in the first epoch, and stopped there
    assert run.train_loss == [] and run.val_accs == []


def test_a_training_is_saved_between_epochs_only(tmp_path: Path, tiny_data: DeviceData) -> None:
    run = Training(config(epochs=2), tiny_data, reports_per_epoch=2)
    run.run_chunk()
    with pytest.raises(ValueError, match="saved between epochs"):
        run.save_state(tmp_path / "state.pt")
    run.run_chunk()
    run.save_state(tmp_path / "state.pt")
    assert run.result().epochs_trained == 1.0


def test_reports_per_epoch_must_be_positive(tiny_data: DeviceData) -> None:
    with pytest.raises(ValueError, match="reports_per_epoch=0 must be at least 1"):
        Training(config(), tiny_data, reports_per_epoch=0)


def test_on_epoch_can_stop_training(tiny_data: DeviceData) -> None:
    seen: list[tuple[int, float]] = []

    def stop_after_two(epoch: int, val_acc: float) -> bool:
        seen.append((epoch, val_acc))
        return epoch == 2

    result = train(config(epochs=5), tiny_data, on_epoch=stop_after_two)
    assert result.stopped_early and result.epochs_run == 2
    assert [e for e, _ in seen] == [1, 2] and tuple(a for _, a in seen) == result.val_accs


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(optimizer="rmsprop"), "optimizer="),
        (dict(lr=0.0), "lr=0.0"),
        (dict(lr=float("nan")), "lr=nan"),
        (dict(optimizer="sgd", momentum=1.0), "momentum=1.0"),
        (dict(momentum=0.9), "applies to sgd only, not adam"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(epochs=0), "epochs=0"),
    ],
)
def test_bad_configs_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**overrides)


def test_model_is_on_the_data_device(tiny_data: DeviceData) -> None:
    result = train(config(epochs=1), tiny_data)
    assert next(result.model.parameters()).device == tiny_data.device == torch.device("cpu")


@pytest.mark.parametrize(
    "overrides",
    [
        {"optimizer": "adamw", "weight_decay": 0.01},
        {"schedule": "cosine"},
        {"schedule": "onecycle"},
        {"label_smoothing": 0.1},
        {"model": ModelConfig((64,), dropout=0.3)},
        {"max_norm": 2.0},
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
    ],
)
def test_regularized_training_learns(tiny_data: DeviceData, overrides: dict[str, object]) -> None:
    result = train(config(**overrides), tiny_data)
    assert result.diverged is None and result.best_acc > 0.7


def test_max_norm_caps_hidden_weights(tiny_data: DeviceData) -> None:
    result = train(config(max_norm=0.5, lr=3e-2), tiny_data)
    hidden = result.model[0].weight
    assert hidden.norm(dim=1).max() <= 0.5 + 1e-5


def test_cosine_schedule_ends_near_zero(tiny_data: DeviceData) -> None:
    from mnist_bench.schedules import rate_table

    table = rate_table("cosine", 0.05, 20)
    assert table is not None and table.lr[0] == 0.05
    assert table.lr[-1] == pytest.approx(0.05 * (1 + math.cos(math.pi * 19 / 20)) / 2)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(schedule="warmup"), "schedule='warmup'"),
        (dict(label_smoothing=-0.1), "label_smoothing=-0.1"),
        (dict(augment="rotate"), "augment='rotate'"),
        (dict(weight_decay=0.01), "adam takes none; use sgd"),
        (dict(max_norm=0.0), "max_norm=0.0"),
    ],
)
def test_bad_regularizers_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**overrides)


@pytest.mark.parametrize("dropout", [-0.1, 1.0])
def test_bad_dropout_rejected(dropout: float) -> None:
    with pytest.raises(ValueError, match="dropout="):
        ModelConfig((64,), dropout=dropout)


# -- a training owns all it uses ---------------------------------------------------------------
def _initial_weights(config: TrainConfig, data: DeviceData) -> list[torch.Tensor]:
    return [p.detach().clone() for p in Training(config, data).model.parameters()]


def test_trainings_built_at_once_on_threads_get_their_seeds_weights(tiny_data: DeviceData) -> None:
    """Lanes build their trainings on threads of their own, at the same time, and torch lets
    go of the GIL inside ops: a training that drew from (or reseeded) the process-wide
    generator would get another's numbers. Each must get what its seed gives alone."""
    configs = [config(model=ModelConfig((384, 256)), seed=s, schedule="cosine") for s in range(6)]
    alone = [_initial_weights(c, tiny_data) for c in configs]
    for _ in range(4):
        barrier = threading.Barrier(len(configs))

        def build(c: TrainConfig, barrier: threading.Barrier = barrier) -> list[torch.Tensor]:
            barrier.wait()  # all at once
            return _initial_weights(c, tiny_data)

        with ThreadPoolExecutor(len(configs)) as pool:
            together = list(pool.map(build, configs))
        for a, b in zip(alone, together, strict=True):
            assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_building_and_training_touch_no_process_wide_random_state(
    tiny_data: DeviceData, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("a training reseeded or forked the process-wide generator")

    monkeypatch.setattr(torch, "manual_seed", forbidden)
    monkeypatch.setattr(torch.random, "manual_seed", forbidden)
    monkeypatch.setattr(torch.random, "fork_rng", forbidden)
    before = torch.get_rng_state()
    train(config(model=ModelConfig((32,), dropout=0.2), schedule="onecycle", augment="elastic", epochs=1), tiny_data)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_private_generator_draws_the_weights_the_global_one_did() -> None:
    """Figures measured before trainings owned their generators still hold: the same seed
    gives the same initial weights as torch.manual_seed(seed) then nn.Linear did."""
    model_config = ModelConfig((64, 32), dropout=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        reference = [nn.Linear(784, 64), nn.Linear(64, 32), nn.Linear(32, 10)]
    built = [
        m for m in build_mlp(model_config, generator=torch.Generator().manual_seed(11)) if isinstance(m, nn.Linear)
    ]
    for a, b in zip(reference, built, strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


@pytest.mark.parametrize("runner", ["eager", "graphed"])
def test_a_state_saved_by_0_2_0_resumes_exactly(runner: str, tmp_path: Path, tiny_data: DeviceData) -> None:
    """0.2.0 saved the config as dataclasses.asdict gave it, and each runner's state in a
    layout of its own: torch's optimizer and scheduler state dicts (eager), or per-parameter
    state, its own SGD's momentum buffers and step counters (graphed)."""
    sgd = config(optimizer="sgd", lr=0.05, momentum=0.9, schedule="exponential")
    whole = Training(sgd, tiny_data)
    while not whole.done:
        whole.run_epoch()
    first = Training(sgd, tiny_data)
    first.run_epoch()
    path = tmp_path / "state.pt"
    first.save_state(path)
    state = torch.load(path, weights_only=True)
    update, step = state["runner"]["update"], state["runner"]["rates"]["step"]
    if runner == "eager":
        layout = {"optimizer": {"state": dict(enumerate(update)), "param_groups": []}, "schedule": {"last_epoch": step}}
    else:
        buffers = [s["momentum_buffer"] for s in update]
        layout = {"optimizer": [], "sgd_buffers": buffers, "step_no": step, "host_step": step, "rates": {}}
    old = {**state, "config": dataclasses.asdict(sgd), "runner": layout, "runner_graphed": runner == "graphed"}
    torch.save(old, path)

    resumed = Training(sgd, tiny_data)
    assert resumed.resume(path) == 1
    while not resumed.done:
        resumed.run_epoch()
    assert resumed.train_loss == whole.train_loss
    for p, q in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="another configuration"):
        Training(dataclasses.replace(sgd, lr=0.01), tiny_data).resume(path)
