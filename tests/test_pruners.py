"""The pruner registry: each entry builds its pruner; an unknown name is an error, never no pruning."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mnist_bench.search.loop import open_study
from mnist_bench.search.pruners import NO_PRUNER, PRUNERS, make_pruner, pruner_spec
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SearchSettings
from mnist_bench.storage.rdb import open_storage


@pytest.mark.parametrize("name", list(PRUNERS))
def test_each_registered_pruner_builds_and_says_whether_it_prunes(name: str) -> None:
    pruner = make_pruner(name, 4)
    assert isinstance(pruner, optuna.pruners.BasePruner)
    assert pruner_spec(name).prunes == (not isinstance(pruner, optuna.pruners.NopPruner))
    assert not pruner_spec(NO_PRUNER).prunes


def test_an_unknown_pruner_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"pruner='nope' must be one of \('median', 'hyperband', 'none'\)"):
        make_pruner("nope", 4)


@pytest.mark.parametrize(
    ("objectives", "kind"),
    [(("accuracy",), optuna.pruners.MedianPruner), (("accuracy", "params"), optuna.pruners.NopPruner)],
)
def test_a_multi_objective_study_gets_no_pruner(tmp_path: Path, objectives: tuple[str, ...], kind: type) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    settings = SearchSettings(study="t", storage=url, trials=1, epochs=3, pruner="median", objectives=objectives)
    study = open_study(settings, SearchSpace(), open_storage(url))
    assert type(study.pruner) is kind
