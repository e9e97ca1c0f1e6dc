from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_bench.model import ModelConfig, SeededDropout, build_mlp, drop_positions, use_generator


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


@pytest.mark.parametrize("p", [0.0056, 0.1, 0.5, 0.9])
def test_dropout_drops_each_unit_independently_at_its_rate(p: float) -> None:
    """The sparse draw is Bernoulli(p) per unit: the count of drops has the binomial's mean
    and spread over many batches, every unit is hit about equally, and the positions are
    sorted, distinct and in range (``n`` pads only the end)."""
    n, batches = 5_000, 400
    generator = torch.Generator().manual_seed(0)
    hits = torch.zeros(n + 1)
    counts = []
    for _ in range(batches):
        positions = drop_positions(n, p, generator, torch.device("cpu"))
        inside = positions[positions < n]
        assert torch.all(inside.diff() > 0) and torch.all(positions[len(inside) :] == n)
        hits.index_add_(0, inside, torch.ones(len(inside)))
        counts.append(len(inside))
    count = torch.tensor(counts, dtype=torch.float64)
    mean, sd = n * p, (n * p * (1 - p)) ** 0.5
    assert abs(count.mean().item() - mean) < 5 * sd / batches**0.5
    assert 0.8 < count.std().item() / sd < 1.2
    halves = hits[: n // 2].sum() / hits[n // 2 : n].sum()  # no drift along the units
    assert abs(halves.item() - 1) < 0.05


def test_dropout_scales_the_kept_units_and_zeroes_their_gradients_where_dropped() -> None:
    dropout = SeededDropout(0.2)
    use_generator(nn.Sequential(dropout), torch.Generator().manual_seed(1))
    x = (torch.rand(64, 50) + 0.5).requires_grad_()  # no zeros of its own
    weights = torch.rand(64, 50) + 0.5
    y = dropout(x)
    (y * weights).sum().backward()
    kept = y != 0
    assert 0.15 < 1 - kept.float().mean().item() < 0.25
    assert torch.allclose(y, x * kept / 0.8) and torch.allclose(x.grad, weights * kept / 0.8)  # type: ignore[arg-type]
    again = SeededDropout(0.2)
    use_generator(nn.Sequential(again), torch.Generator().manual_seed(1))
    assert torch.equal(again(x), y)  # the same generator state, the same mask
    assert torch.equal(dropout.eval()(x), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_rounds_once_as_a_scalar_multiply_would(dtype: torch.dtype) -> None:
    # Kept units are exactly x * (1 / (1 - p)) rounded once to x's precision (a bf16 mask
    # holding the scale would round it first); dropped units are exactly 0, and so are
    # their gradients.
    dropout = SeededDropout(0.3)
    use_generator(nn.Sequential(dropout), torch.Generator().manual_seed(2))
    x = (torch.rand(32, 40) + 0.5).to(dtype).requires_grad_()
    y = dropout(x)
    kept = y != 0
    assert y.dtype == dtype and 0.2 < 1 - kept.float().mean().item() < 0.4
    assert torch.equal(y, torch.where(kept, x.detach().mul(1 / 0.7), 0).to(dtype))
    y.sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype
    assert torch.equal(x.grad, torch.where(kept, torch.ones_like(x).mul(1 / 0.7), 0).to(dtype))
