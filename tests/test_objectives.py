"""The objective registry: each entry's direction and value; what a study's objectives may be."""

from __future__ import annotations

import pytest
from torch import nn

from mnist_bench.config import TrainConfig
from mnist_bench.model import ModelConfig
from mnist_bench.search.objectives import FIRST, OBJECTIVES, check_objectives, objective_values, parse_objectives
from mnist_bench.training.trainer import TrainResult


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
