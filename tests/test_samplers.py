"""The sampler registry: each entry builds its sampler; an unknown name is an error, never TPE."""

from __future__ import annotations

import warnings

import optuna
import pytest

from mnist_bench.errors import MnistBenchError
from mnist_bench.search.samplers import SAMPLERS, SamplerSpec, make_sampler
from mnist_bench.search.study import SearchSettings


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("parallel", [1, 3])
def test_each_registered_sampler_builds_quietly(name: str, parallel: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TPE's constant liar is experimental: its warning is filtered where it is built
        sampler = make_sampler(name, 0, parallel=parallel)
    assert isinstance(sampler, optuna.samplers.BaseSampler)


def test_an_unknown_sampler_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"sampler='gp' must be one of \('tpe', 'random', 'nsga2'\)"):
        make_sampler("gp", 0)


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
