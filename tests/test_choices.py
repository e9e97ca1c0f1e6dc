"""Every registered choice through the whole user path, on tiny real IDX files.

Each optimizer, schedule and augmentation is a name in one registry; a name that one
command compares by hand fails in the one place no test goes (an AdamW winner once
made ``best`` raise KeyError). So each registered name, fixed in a space file, goes
through ``search``, ``best``, ``best --retrain``, ``baselines --study``, ``predict``,
``evaluate`` and ``train``, read from the registries: a new entry is tested here
without a line of this file changing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mnist_bench.augment import AUGMENTS
from mnist_bench.cli import app
from mnist_bench.data import load_split
from mnist_bench.optimizers import OPTIMIZERS
from mnist_bench.schedules import SCHEDULES

runner = CliRunner()
# (the space key and the train option that choose it, the registry)
REGISTRIES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "augment": AUGMENTS}
CHOICES = [(kind, name) for kind, registry in REGISTRIES.items() for name in registry]


def ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


@pytest.mark.parametrize(("kind", "name"), CHOICES, ids=[f"{k}-{n}" for k, n in CHOICES])
def test_a_registered_choice_goes_through_every_command(kind: str, name: str, tmp_path: Path, tiny_mnist: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(f'depth = [1, 1]\nwidth = [16, 16]\nbatch_sizes = [64]\n{kind}s = ["{name}"]\n')
    data = ["--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    common = ["--studies-dir", str(tmp_path / "studies"), *data]
    ok(["search", "--space", str(space), "--trials", "1", "--epochs", "1", "--seed", "0", "--val-size", "100", *common])
    ok(["best", *common])
    retrained = ok(["best", "--retrain", "--seeds", "1", "--epochs", "1", *common])
    assert "test accuracy" in retrained
    folder = next((tmp_path / "studies" / "mnist-mlp").glob("trial-*"))
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["config"][kind] == name  # the checkpoint says the choice it trained with
    if kind == "optimizer":  # baselines trains its five tutorial nets too: once per optimizer is enough
        described = ok(["baselines", "--seeds", "1", "--study", "mnist-mlp", *common])
        assert "mnist-mlp winner" in described and OPTIMIZERS[name].display in described
    evaluated = ok(["evaluate", str(folder), *data[:-2]])
    assert "test accuracy" in evaluated
    test = load_split(tiny_mnist, "test", verify=False)
    Image.fromarray(test.images[0].numpy()).save(tmp_path / "digit.png")
    predicted = json.loads(ok(["predict", str(folder), str(tmp_path / "digit.png"), "--json"]))
    assert predicted[0]["label"] in range(10)
    option = {"optimizer": ["--optimizer", name], "schedule": ["--schedule", name], "augment": ["--augment", name]}
    ok(["train", "--layers", "16", "--epochs", "1", "--lr", "0.01", *option[kind], "--out", str(tmp_path / "t"), *data])
    assert json.loads((tmp_path / "t" / "checkpoint.json").read_text())["config"][kind] == name


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_an_unknown_choice_is_one_line_naming_the_known_ones(kind: str, tmp_path: Path, tiny_mnist: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(f'{kind}s = ["nope"]\n')
    result = runner.invoke(app, ["search", "--space", str(space), "--data-dir", str(tiny_mnist), "--no-verify"])
    assert result.exit_code != 0 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert all(name in result.stderr for name in REGISTRIES[kind])
