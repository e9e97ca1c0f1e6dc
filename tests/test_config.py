"""TrainConfig as a dict and back: the one way checkpoints and saved training states store it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from mnist_bench.augment import Deform
from mnist_bench.config import TrainConfig
from mnist_bench.model import ModelConfig

PLAIN = TrainConfig(ModelConfig((8,)), "adam", 1e-3)
# Every field, nested ones too, away from PLAIN's (and so from its default). A field added
# later stays at its default here, and the first test names it until it is set here too,
# which the round trip then holds the codec to.
EVERY = TrainConfig(
    model=ModelConfig((300, 100), dropout=0.25),
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    batch_size=128,
    epochs=7,
    seed=42,
    weight_decay=5e-4,
    schedule="cosine",
    label_smoothing=0.1,
    augment="elastic",
    max_norm=3.5,
    deform=Deform(
        rotate_deg=15.0, scale=0.15, shear_deg=10.0, shift_px=3.0, elastic_alpha_px=6.0, elastic_sigma_px=5.0
    ),
)


def leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every field, nested dataclasses' fields in place of them."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            yield from leaves(value, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", value


def test_every_field_is_set_away_from_plain_training() -> None:
    plain = dict(leaves(PLAIN))
    assert [name for name, value in leaves(EVERY) if value == plain[name]] == []


def test_every_field_survives_the_round_trip_through_json() -> None:
    stored = json.loads(json.dumps(EVERY.to_dict()))
    assert TrainConfig.from_dict(stored) == EVERY
    assert TrainConfig.from_dict(PLAIN.to_dict()) == PLAIN


def test_the_stored_names_are_those_checkpoints_always_used() -> None:
    stored = EVERY.to_dict()
    assert stored["hidden"] == [300, 100] and stored["dropout"] == 0.25  # the model's, beside the training's
    assert stored["deform"] == {f.name: getattr(EVERY.deform, f.name) for f in dataclasses.fields(Deform)}
    assert {"optimizer", "lr", "momentum", "batch_size", "epochs", "seed", "max_norm", "augment"} <= set(stored)


def test_a_config_as_the_first_checkpoints_stored_it_reads_as_plain_training() -> None:
    first = {"hidden": [64], "optimizer": "sgd", "lr": 0.1, "momentum": 0.5, "batch_size": 32, "epochs": 2, "seed": 1}
    config = TrainConfig.from_dict(first)
    assert config == TrainConfig(ModelConfig((64,)), "sgd", 0.1, momentum=0.5, batch_size=32, epochs=2, seed=1)


def test_an_unknown_key_is_refused_not_dropped() -> None:
    with pytest.raises(TypeError, match="no_such_field"):
        TrainConfig.from_dict({**PLAIN.to_dict(), "no_such_field": 3})
