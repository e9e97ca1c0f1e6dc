from __future__ import annotations

import math

import pytest
import torch

from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.model import ModelConfig
from mnist_bench.train import accuracy, train


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
    assert a.eval_acc == b.eval_acc and a.train_loss == b.train_loss
    assert a.train_loss != c.train_loss


def test_sgd_with_momentum_learns(tiny_data: DeviceData) -> None:
    result = train(config(optimizer="sgd", lr=0.05, momentum=0.9), tiny_data)
    assert result.best_acc > 0.8


def test_divergence_is_detected_not_raised(tiny_data: DeviceData) -> None:
    result = train(config(optimizer="sgd", lr=1e6, momentum=0.9, epochs=5), tiny_data)
    assert result.diverged is not None and "loss became" in result.diverged
    assert result.epochs_run < 5 and not math.isfinite(result.train_loss[-1])


def test_on_epoch_can_stop_training(tiny_data: DeviceData) -> None:
    seen: list[tuple[int, float]] = []

    def stop_after_two(epoch: int, acc: float) -> bool:
        seen.append((epoch, acc))
        return epoch == 2

    result = train(config(epochs=5), tiny_data, on_epoch=stop_after_two)
    assert result.stopped_early and result.epochs_run == 2
    assert [e for e, _ in seen] == [1, 2] and tuple(a for _, a in seen) == result.eval_acc


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(optimizer="rmsprop"), "optimizer="),
        (dict(lr=0.0), "lr=0.0"),
        (dict(lr=float("nan")), "lr=nan"),
        (dict(optimizer="sgd", momentum=1.0), "momentum=1.0"),
        (dict(momentum=0.9), "SGD only"),
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
    from mnist_bench.train import make_optimizer, make_schedule, seeded_model

    cfg = config(schedule="cosine", epochs=2)
    model = seeded_model(cfg, torch.device("cpu"))
    optimizer = make_optimizer(cfg, model, torch.device("cpu"))
    schedule = make_schedule(cfg, optimizer, steps_per_epoch=10)
    assert schedule is not None
    for _ in range(20):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(schedule="warmup"), "schedule='warmup'"),
        (dict(label_smoothing=-0.1), "label_smoothing=-0.1"),
        (dict(augment="rotate"), "augment='rotate'"),
        (dict(weight_decay=0.01), "use adamw"),
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
