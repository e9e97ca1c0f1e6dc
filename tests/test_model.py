from __future__ import annotations

import pytest
import torch

from mnist_bench.model import ModelConfig, build_mlp


@pytest.mark.parametrize("hidden", [(128,), (128, 64), (256, 128, 64, 32)])
def test_mlp_shapes_and_parameter_count(hidden: tuple[int, ...]) -> None:
    config = ModelConfig(hidden=hidden)
    model = build_mlp(config, generator=torch.Generator())
    assert model(torch.zeros(3, 784)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == config.n_params


def test_parse_accepts_full_and_hidden_only_specs() -> None:
    assert ModelConfig.parse("784-128-64-10") == ModelConfig((128, 64))
    assert ModelConfig.parse("128,64") == ModelConfig((128, 64))
    assert ModelConfig((128, 64)).layers == "784-128-64-10"


@pytest.mark.parametrize("spec", ["", "784-10", "1-2-3-4-5-6-7-8-9", "12-x"])
def test_parse_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        ModelConfig.parse(spec)


def test_config_is_frozen() -> None:
    config = ModelConfig((64,))
    with pytest.raises(AttributeError):
        config.hidden = (32,)  # type: ignore[misc]
