from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest

from mnist_bench.augment import DEFAULT_DEFORM, Deform, augment_spec
from mnist_bench.errors import MnistBenchError
from mnist_bench.search.space import (
    SearchSpace,
    load_space,
    sample_config,
    sample_precision,
    shipped_folder,
    shipped_spaces,
)
from tests.conftest import REPO

SHIPPED = REPO / "mnist_bench" / "search" / "spaces"


def test_default_file_matches_builtin_defaults() -> None:
    assert load_space("default") == SearchSpace()
    assert load_space(str(SHIPPED / "default.toml")) == SearchSpace()


def test_shipped_spaces_are_package_data_with_one_line_descriptions() -> None:
    spaces = shipped_spaces()
    assert [s.name for s in spaces] == sorted(p.stem for p in SHIPPED.glob("*.toml"))
    assert {"default", "extended", "frontier-cpu"} <= {s.name for s in spaces}
    for space in spaces:
        assert space.description and "\n" not in space.description and len(space.description) <= 100
        load_space(space.name)  # each one loads
    assert Path(str(shipped_folder())) == SHIPPED  # this checkout's copy: the one copy
    assert not list((REPO / "studies").glob("*.toml"))  # none left where they used to be


def test_a_name_is_a_shipped_space_and_a_path_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MnistBenchError, match=r"'wide' is not a shipped space \(default, extended, .*\); pass a file"):
        load_space("wide")
    # Files of the same name in the working folder do not shadow a shipped space.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    for folder in (tmp_path, tmp_path / "studies"):
        (folder / "default.toml").write_text("depth = [2, 2]\n")
    assert load_space("default") == SearchSpace()
    assert load_space("studies/default.toml").depth == (2, 2)
    with pytest.raises(MnistBenchError, match=r"search space file .*gone.toml not found"):
        load_space(str(tmp_path / "gone.toml"))


def test_partial_file_overrides_only_its_keys(tmp_path: Path) -> None:
    (tmp_path / "adam.toml").write_text('description = "Adam, two layers"\noptimizers = ["adam"]\ndepth = [2, 2]\n')
    space = load_space(str(tmp_path / "adam.toml"))
    assert space.optimizers == ("adam",) and space.depth == (2, 2)
    assert space.width == SearchSpace().width


@pytest.mark.parametrize(
    "text, message",
    [
        ("depth = [1, 9]", "depth"),
        ("depth = 3", "must be a list"),
        ("widht = [1, 2]", "unknown key"),
        ('optimizers = ["lbfgs"]', "optimizers"),
        ("batch_sizes = [0, 64]", "batch_sizes"),
        ("sgd_lr = [0.1]", r"\[low, high\]"),
        ("depth = [", "not valid TOML"),
        ("epochs = [0, 4]", r"epochs = \[0, 4\] must satisfy 1 <= low"),
        ("epochs = [3]", r"epochs must be \[low, high\]"),
        ('precisions = ["fp16"]', r"precisions = \['fp16'\] must be a subset of \['fp32', 'tf32', 'bf16'\]"),
    ],
)
def test_bad_space_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(MnistBenchError, match=message):
        load_space(str(tmp_path / "bad.toml"))


def test_a_file_builds_on_its_base_and_changes_only_its_own_keys(tmp_path: Path) -> None:
    (tmp_path / "parent.toml").write_text('optimizers = ["sgd"]\ndepth = [2, 3]\nwidth = [64, 256]\n')
    (tmp_path / "child.toml").write_text('base = "parent.toml"\nwidth = [128, 512]\n')
    sub = tmp_path / "mine"
    sub.mkdir()
    (sub / "grandchild.toml").write_text('base = "../child.toml"\ndepth = [1, 1]\n')  # relative to this file
    child = load_space(str(tmp_path / "child.toml"))
    assert (child.optimizers, child.depth, child.width) == (("sgd",), (2, 3), (128, 512))
    assert child.batch_sizes == SearchSpace().batch_sizes  # keys nobody sets stay built-in
    grandchild = load_space(str(sub / "grandchild.toml"))
    assert (grandchild.optimizers, grandchild.depth, grandchild.width) == (("sgd",), (1, 1), (128, 512))


def test_a_file_of_ones_own_builds_on_a_shipped_space_by_name(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('base = "frontier-cpu-wd"\nwidth = [256, 512]\n')
    mine, shipped = load_space(str(tmp_path / "mine.toml")), load_space("frontier-cpu-wd")
    assert mine.width == (256, 512) and mine.sgd_weight_decay == shipped.sgd_weight_decay == (5e-5, 5e-4)
    assert mine.augments == load_space("frontier-cpu").augments  # the shipped chain goes on by name


@pytest.mark.parametrize(
    "files, message",
    [
        ({"bad": 'base = "gone"'}, r"search space 'gone' is not a shipped space .*\(the base of .*bad.toml\)"),
        ({"bad": 'base = "gone.toml"'}, r"search space file .*gone.toml not found \(the base of .*bad.toml\)"),
        (
            {"bad": 'base = "loop.toml"', "loop": 'base = "bad.toml"'},
            "base files loop: .*bad.toml -> .*loop.toml -> .*bad.toml",
        ),
        ({"bad": "base = 3"}, "base must be a space name or path"),
        (
            {"bad": 'base = "typo.toml"', "typo": "widht = [1, 2]"},
            r"typo.toml: unknown key\(s\) widht; known: .*augments, base, batch_sizes, depth, description",
        ),
    ],
)
def test_bad_bases_are_rejected_naming_the_file_at_fault(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text + "\n")
    with pytest.raises(MnistBenchError, match=message):
        load_space(str(tmp_path / "bad.toml"))


BUILT_ON_A_BASE = [p for p in sorted(SHIPPED.glob("*.toml")) if "base" in tomllib.loads(p.read_text())]


def test_shipped_spaces_use_bases() -> None:
    assert len(BUILT_ON_A_BASE) >= 4  # the frontier family's variants hold only what they change


@pytest.mark.parametrize("path", BUILT_ON_A_BASE, ids=lambda p: p.stem)
def test_shipped_spaces_built_on_a_base_differ_from_it_only_where_they_say(path: Path) -> None:
    values = tomllib.loads(path.read_text())
    base = values.pop("base")
    values.pop("description")
    space, parent = load_space(path.stem), load_space(base)
    changed = {f for f, v in space.to_dict().items() if v != parent.to_dict()[f]}
    assert changed and changed <= set(values)


def test_fixed_trial_rebuilds_the_config_a_live_trial_chose() -> None:
    # Retraining rebuilds a stored trial through the same function: the space is written once.
    space = SearchSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        chosen = sample_config(trial, space, epochs=4, seed=1)
        rebuilt = sample_config(optuna.trial.FixedTrial(trial.params), space, epochs=4, seed=1)
        assert rebuilt == chosen
        assert space.depth[0] <= len(chosen.model.hidden) <= space.depth[1]
        assert chosen.batch_size in space.batch_sizes
        if chosen.optimizer == "adam":
            assert chosen.momentum == 0.0 and space.adam_lr[0] <= chosen.lr <= space.adam_lr[1]
        else:
            assert space.sgd_momentum[0] <= chosen.momentum <= space.sgd_momentum[1]
        study.tell(trial, chosen.lr)


def test_space_steers_tpe_through_ask_and_tell() -> None:
    # A cheap objective (prefer wide first layers) stands in for training.
    space = SearchSpace()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10))
    for _ in range(40):
        trial = study.ask()
        study.tell(trial, float(sample_config(trial, space, epochs=1, seed=0).model.hidden[0]))
    assert study.best_value > 600


def _random_draws(space: SearchSpace, n: int, sampler_seed: int = 0, epochs: int = 2, seed: int = 0) -> list:
    """n random trials of a space as (params, config), each config rebuilt from its params."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=sampler_seed))
    draws = []
    for _ in range(n):
        trial = study.ask()
        chosen = sample_config(trial, space, epochs=epochs, seed=seed)
        assert sample_config(optuna.trial.FixedTrial(trial.params), space, epochs=epochs, seed=seed) == chosen
        draws.append((trial.params, chosen))
        study.tell(trial, 0.0)
    return draws


def test_extended_space_round_trips_through_fixed_trial() -> None:
    space = load_space("extended")
    seen = set()
    for _, chosen in _random_draws(space, 40, sampler_seed=1, epochs=3, seed=2):
        seen.add((chosen.optimizer, chosen.schedule, chosen.augment))
        assert 0 <= chosen.model.dropout <= 0.5 and chosen.max_norm in (None, 2.0, 3.0, 4.0)
    assert {o for o, _, _ in seen} == {"sgd", "adam", "adamw"}
    assert {a for _, _, a in seen} == {"none", "affine", "elastic"}


def _asked(space: SearchSpace, n: int, *, whole_space: bool) -> list[tuple[dict, object]]:
    """n random trials of a space as (params, config)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = []
    for _ in range(n):
        trial = study.ask()
        config = sample_config(trial, space, epochs=2, seed=0, whole_space=whole_space)
        draws.append((trial.params, config))
        study.tell(trial, 0.0)
    return draws


@pytest.mark.parametrize("name", [space.name for space in shipped_spaces()])
def test_whole_space_asks_every_trial_the_same_parameters(name: str) -> None:
    # What a sampler that models only the parameters all trials share (gp) needs: one set
    # of names whatever the draws, the union of those each trial would use.
    space = load_space(name)
    whole = _asked(space, 30, whole_space=True)
    assert len({frozenset(params) for params, _ in whole}) == 1
    used = set().union(*(params for params, _ in _asked(space, 30, whole_space=False)))
    assert set(whole[0][0]) == used
    for params, chosen in whole:
        # The config takes what its draws choose, and the default mode rebuilds it from the stored params.
        assert sample_config(optuna.trial.FixedTrial(params), space, epochs=2, seed=0) == chosen
        assert "n_layers" not in params or len(chosen.model.hidden) == params["n_layers"]
        assert chosen.lr == params.get(f"{chosen.optimizer}_lr", chosen.lr)
        assert augment_spec(chosen.augment).deforms or chosen.deform == DEFAULT_DEFORM


def test_whole_space_asks_what_other_draws_would_use_and_the_config_ignores_it() -> None:
    space = SearchSpace(augments=("none", "affine"), rotate_deg=(0.0, 15.0))  # depth 1-4, sgd and adam
    draws = _asked(space, 20, whole_space=True)
    (params, chosen), *_ = [d for d in draws if d[0]["n_layers"] == 1 and d[0]["augment"] == "none"]
    assert chosen.model.hidden == (params["width_0"],) and chosen.deform == DEFAULT_DEFORM
    assert {"width_3", "sgd_momentum", "adam_lr", "rotate_deg"} <= set(params)
    assert sample_config(optuna.trial.FixedTrial(params), space, epochs=2, seed=0, whole_space=True) == chosen
    (params, chosen), *_ = [d for d in draws if d[0]["augment"] == "affine"]
    assert chosen.deform.rotate_deg == params["rotate_deg"]


def test_default_space_asks_no_regularizer() -> None:
    study = optuna.create_study()
    trial = study.ask()
    sample_config(trial, SearchSpace(), epochs=1, seed=0)
    assert not {"dropout", "schedule", "augment", "label_smoothing", "max_norm", "sgd_weight_decay"} & set(trial.params)


@pytest.mark.parametrize(
    "text, message",
    [
        ("dropout = [-0.1, 0.5]", "dropout"),
        ("dropout = [0.0, 1.0]", "dropout"),
        ('schedules = ["warmup"]', "schedules"),
        ('augments = ["twist"]', "augments"),
        ("depth = [2, 9]", "depth"),
        ('shapes = ["1000-x"]', "shape '1000-x'"),
        ('shapes = ["1-1-1-1-1-1-1-1-1"]', "1 to 8 layers"),
        ("rotate_deg = [-5.0, 10.0]", "rotate_deg"),
        ("sgd_weight_decay = [0.0, 0.001]", "log-uniform, so low must be > 0"),
        ("sgd_weight_decay = [-0.1, -0.1]", "sgd_weight_decay"),
        ("elastic_alpha_px = [2.0, 100.0]", "elastic_alpha_px=100.0 must be between 0 and 14"),
    ],
)
def test_bad_regularizer_ranges_rejected(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(MnistBenchError, match=message):
        load_space(str(tmp_path / "bad.toml"))


def test_frontier_space_goes_deep_and_wide_with_deformations() -> None:
    space = load_space("frontier")
    assert space.depth[1] >= 6 and space.width[1] >= 4096 and space.augments == ("elastic",)
    depths, shears = set(), set()
    for _, chosen in _random_draws(space, 30):
        depths.add(len(chosen.model.hidden))
        shears.add(chosen.deform.shear_deg)
        assert chosen.schedule in ("cosine", "exponential") and 5 <= chosen.deform.rotate_deg <= 15
    assert max(depths) >= 5 and len(shears) > 1


def test_frontier_cpu_space_stays_within_what_two_cores_train_in_seconds() -> None:
    space = load_space("frontier-cpu")
    assert space.optimizers == ("sgd",) and space.schedules == ("cosine",) and space.augments == ("elastic",)
    alphas = set()
    for _, chosen in _random_draws(space, 30):
        assert chosen.model.n_params < 4_300_000 and chosen.momentum == 0.9
        assert chosen.deform.elastic_sigma_px == 5.0 and 2 <= chosen.deform.elastic_alpha_px <= 6
        alphas.add(chosen.deform.elastic_alpha_px)
    assert len(alphas) > 1  # the strengths are searched, not fixed


def test_frontier_cpu_deep_space_chooses_among_the_record_tables_shapes() -> None:
    space = load_space("frontier-cpu-deep")
    assert space.largest_hidden == (2500, 2000, 1500, 1000, 500)
    shapes = set()
    for params, chosen in _random_draws(space, 20):
        assert "n_layers" not in params and chosen.batch_size == 256
        shapes.add(chosen.model.hidden)
    assert len(shapes) == 4 and (1000, 500) in shapes


def test_frontier_cpu_record_space_fixes_the_records_shape_and_searches_its_recipe() -> None:
    space = load_space("frontier-cpu-record")
    rates = set()
    for _, chosen in _random_draws(space, 10):
        assert chosen.model.hidden == (2500, 2000, 1500, 1000, 500) and chosen.momentum == 0.9
        assert 0.05 <= chosen.lr <= 0.11 and 7.5 <= chosen.deform.rotate_deg <= 12.5
        rates.add(chosen.lr)
    assert len(rates) > 1  # the recipe is searched, not fixed


def test_frontier_cpu_record_lit_space_fixes_the_deformations_and_searches_the_rest() -> None:
    space = load_space("frontier-cpu-record-lit")
    literature = Deform(
        rotate_deg=10.0, scale=0.1, shear_deg=10.0, shift_px=2.0, elastic_alpha_px=4.0, elastic_sigma_px=5.0
    )
    recipes = set()
    for _, chosen in _random_draws(space, 10):
        assert chosen.model.hidden == (2500, 2000, 1500, 1000, 500) and chosen.deform == literature
        recipes.add((chosen.lr, chosen.model.dropout, chosen.label_smoothing))
    assert len(recipes) > 1  # learning rate, dropout and label smoothing are searched


def test_frontier_cpu_record_ls_space_keeps_smoothing_near_the_usual_and_dropout_small() -> None:
    space = load_space("frontier-cpu-record-ls")
    recipes = set()
    for _, chosen in _random_draws(space, 10):
        assert chosen.model.hidden == (2500, 2000, 1500, 1000, 500)
        assert 0.05 <= chosen.label_smoothing <= 0.12 and chosen.model.dropout <= 0.05
        recipes.add((chosen.lr, chosen.model.dropout, chosen.label_smoothing))
    assert len(recipes) > 1  # still searched, not fixed


def test_frontier_cpu_record_wd_space_searches_sgd_weight_decay() -> None:
    space = load_space("frontier-cpu-record-wd")
    decays = set()
    for params, chosen in _random_draws(space, 10):
        assert chosen.optimizer == "sgd" and chosen.model.hidden == (2500, 2000, 1500, 1000, 500)
        assert 5e-5 <= chosen.weight_decay <= 5e-4 and params["sgd_weight_decay"] == chosen.weight_decay
        decays.add(chosen.weight_decay)
    assert len(decays) > 1  # searched, not fixed


def test_frontier_cpu_wd_space_keeps_nets_small_and_searches_decay() -> None:
    space = load_space("frontier-cpu-wd")
    decays = set()
    for params, chosen in _random_draws(space, 10):
        assert chosen.optimizer == "sgd" and 2 <= len(chosen.model.hidden) <= 3
        assert all(512 <= w <= 1024 for w in chosen.model.hidden)  # fits a 150-epoch retrain in fp32
        assert 5e-5 <= chosen.weight_decay <= 5e-4 and params["sgd_weight_decay"] == chosen.weight_decay
        decays.add(chosen.weight_decay)
    assert len(decays) > 1  # searched, not fixed


def test_speed_space_draws_each_trials_epochs_and_precision_and_other_spaces_ask_neither() -> None:
    speed = load_space("speed")
    assert speed.searches_epochs and speed.precisions == ("fp32", "bf16")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(12):
        trial = study.ask()
        config = sample_config(trial, speed, epochs=99, seed=0)
        drawn.append((config.epochs, sample_precision(trial, speed, "fp32")))
        assert trial.params["epochs"] == config.epochs and 1 <= config.epochs <= 8  # the search's 99 is not used
    assert len({e for e, _ in drawn}) > 2 and {p for _, p in drawn} == {"fp32", "bf16"}
    for name in ("default", "extended"):  # their seeded trials repeat: nothing new is asked of them
        trial = optuna.create_study().ask()
        assert sample_config(trial, load_space(name), epochs=5, seed=0).epochs == 5
        assert sample_precision(trial, load_space(name), "tf32") == "tf32"
        assert "epochs" not in trial.params and "precision" not in trial.params
