from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mnist_bench.artifacts import checkpoint
from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.model import ModelConfig
from mnist_bench.training.trainer import train

CONFIG = TrainConfig(ModelConfig((32, 16)), "sgd", 0.05, momentum=0.9, batch_size=32, epochs=2, seed=3)


@pytest.fixture
def saved(tmp_path: Path, tiny_data: DeviceData) -> tuple[Path, torch.nn.Module]:
    result = train(CONFIG, tiny_data)
    checkpoint.save(tmp_path / "ckpt", result.model, CONFIG, {"test": {"accuracy": result.final_acc}})
    return tmp_path / "ckpt", result.model


def test_round_trip_restores_config_and_weights(saved: tuple[Path, torch.nn.Module], tiny_data: DeviceData) -> None:
    folder, model = saved
    loaded = checkpoint.load(folder)
    assert loaded.config == CONFIG
    assert loaded.meta["layers"] == "784-32-16-10" and loaded.meta["format_version"] == 1
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(model(tiny_data.x_eval), loaded.model(tiny_data.x_eval))
    assert checkpoint.load(folder / "checkpoint.json").config == CONFIG


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(MnistBenchError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "nothing")


def test_truncated_weights(saved: tuple[Path, torch.nn.Module]) -> None:
    weights = saved[0] / "model.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(MnistBenchError, match="does not match the sha256"):
        checkpoint.load(saved[0])


def test_truncated_json(saved: tuple[Path, torch.nn.Module]) -> None:
    meta = saved[0] / "checkpoint.json"
    meta.write_text(meta.read_text()[:50])
    with pytest.raises(MnistBenchError, match="not valid JSON"):
        checkpoint.load(saved[0])


def edit_meta(folder: Path, **changes: object) -> None:
    path = folder / "checkpoint.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_other_format_version(saved: tuple[Path, torch.nn.Module]) -> None:
    edit_meta(saved[0], format_version=2)
    with pytest.raises(MnistBenchError, match="format version 2; this mnist-bench reads version 1"):
        checkpoint.load(saved[0])


def test_weights_that_do_not_fit_the_config(saved: tuple[Path, torch.nn.Module]) -> None:
    meta = json.loads((saved[0] / "checkpoint.json").read_text())
    edit_meta(saved[0], config={**meta["config"], "hidden": [64, 16]})
    with pytest.raises(MnistBenchError, match="do not match the config 784-64-16-10"):
        checkpoint.load(saved[0])


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.json").write_text("{}")
    with pytest.raises(MnistBenchError, match="not an mnist-bench checkpoint"):
        checkpoint.load(tmp_path)


def test_any_part_of_a_checkpoint_loads(saved: tuple[Path, torch.nn.Module]) -> None:
    folder = saved[0]
    for part in (folder, folder / "checkpoint.json", folder / "model.pt"):
        assert checkpoint.load(part).config == CONFIG


def test_a_file_outside_a_checkpoint_says_what_a_checkpoint_is(tmp_path: Path) -> None:
    (tmp_path / "digit.png").write_bytes(b"not a checkpoint")
    with pytest.raises(MnistBenchError, match="is not part of a checkpoint.*folder with checkpoint.json and model.pt"):
        checkpoint.load(tmp_path / "digit.png")
