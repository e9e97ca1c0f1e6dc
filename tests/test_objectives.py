"""The objective registry: each entry's direction, its value at a report and at the end; what a
study's objectives may be."""

from __future__ import annotations

import pytest
from torch import nn

from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.model import ModelConfig
from mnist_bench.search.objectives import (
    FIRST,
    OBJECTIVES,
    check_objectives,
    objective_values,
    parse_objectives,
    report_values,
)
from mnist_bench.training.trainer import Training, TrainResult


def test_each_objective_reads_its_value_off_a_finished_training() -> None:
    config = TrainConfig(ModelConfig.parse("784-16-10"), "adam", 1e-3)
    result = TrainResult(config, (0.5, 0.9, 0.8), (1.0, 0.5, 0.4), 1.0, 300, False, None, model=nn.Identity())
    expected = {
        "accuracy": 0.9,
        "latency": 0.25,
        "params": float(config.model.n_params),
        "time": 1.0,
        "flops": 6 * config.model.n_params * 300 / 1e9,
    }
    assert objective_values(list(OBJECTIVES), result, 0.25) == tuple(expected[name] for name in OBJECTIVES)
    assert OBJECTIVES[FIRST].direction == "maximize"
    assert {spec.direction for spec in OBJECTIVES.values()} <= {"maximize", "minimize"}


def test_objectives_are_parsed_accuracy_first_each_once() -> None:
    assert parse_objectives(" accuracy , latency,params ") == ("accuracy", "latency", "params")
    assert parse_objectives("accuracy,time") == ("accuracy", "time")
    assert check_objectives(["accuracy"]) == ("accuracy",)
    known = r"\('accuracy', 'latency', 'params', 'time', 'flops'\)"
    with pytest.raises(ValueError, match=rf"objective='speed' must be one of {known}"):
        parse_objectives("accuracy,speed")
    for bad in ("latency", "", "accuracy,params,params", "params,accuracy"):
        with pytest.raises(ValueError, match="accuracy first, then any of latency, params, time, flops, each once"):
            parse_objectives(bad)


def test_each_objective_reads_its_value_off_a_training_at_a_report(tiny_data: DeviceData) -> None:
    """Half-way into the first of 2 epochs: the accuracy just reported, the parameter count,
    the seconds all epochs would take at the rate so far, and the latency, measured once."""
    config = TrainConfig(ModelConfig.parse("784-16-10"), "adam", 1e-3, batch_size=50, epochs=2)
    run = Training(config, tiny_data, reports_per_epoch=2)
    val_acc = run.run_chunk()
    assert val_acc is not None and run.samples == 250 and run.latency_ms is None
    values = dict(zip(OBJECTIVES, report_values(list(OBJECTIVES), run, val_acc), strict=True))
    assert values["accuracy"] == val_acc and values["params"] == config.model.n_params
    assert values["time"] == pytest.approx(run.train_time * 1000 / 250)  # 2 epochs of 500 images
    assert values["latency"] == run.latency_ms and values["latency"] > 0
    assert values["flops"] == 6 * config.model.n_params * 1000 / 1e9  # all it will train, known from the start
    run.run_chunk()
    assert report_values(["latency"], run, 0.0) == (values["latency"],)  # reused, not measured again
