"""What a seed gave: seeded tiny searches, pinned trial for trial.

The redesign that moved every module and merged the two steps and the two search loops
must leave a seeded search's trials as they were. ``tests/pins/seeded_search.json`` holds
what these searches stored before the first move: parameters, states, objective values,
every epoch's validation accuracy, and every epoch's training loss to three decimals. A
change that alters the random streams or the training's arithmetic changes the pin, on
purpose and in its own commit, together with the version (``__version__``).

Regenerate (only where such a change is meant): ``python tests/test_seeded_pin.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from mnist_bench.data import DeviceData, load_split
from mnist_bench.search.loop import run_trials
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SearchSettings

PIN = Path(__file__).with_name("pins") / "seeded_search.json"
SPACES = {
    # The default space's choices at small widths.
    "small": SearchSpace(depth=(1, 2), width=(8, 64), batch_sizes=(32, 64)),
    # Every optimizer, schedule and augmentation, with each regularizer open.
    "wide": SearchSpace(
        depth=(1, 2),
        width=(8, 48),
        optimizers=("sgd", "adam", "adamw"),
        batch_sizes=(32, 64),
        dropout=(0.0, 0.3),
        label_smoothing=(0.0, 0.1),
        schedules=("constant", "cosine", "onecycle", "exponential"),
        augments=("none", "affine", "elastic"),
        max_norms=(0.0, 3.0),
        sgd_weight_decay=(1e-5, 1e-2),
    ),
}
CASES = [(name, parallel) for name in SPACES for parallel in (1, 3)]


def seeded_trials(space: str, parallel: int, data: DeviceData, folder: Path) -> list[dict[str, Any]]:
    settings = SearchSettings(
        study=f"{space}-{parallel}",
        storage=f"sqlite:///{folder / 's.db'}",
        trials=8,
        epochs=3,
        seed=0,
        val_size=100,
        parallel=parallel,
    )
    study = run_trials(settings, SPACES[space], data).study
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            "values": t.values,
            "val_acc": [t.intermediate_values[e] for e in sorted(t.intermediate_values)],
            "train_loss": [round(loss, 3) for loss in t.user_attrs.get("train_loss", [])],
        }
        for t in study.trials
    ]


@pytest.mark.parametrize(("space", "parallel"), CASES, ids=[f"{s}-parallel{p}" for s, p in CASES])
def test_a_seeded_search_gives_the_pinned_trials(
    space: str, parallel: int, tiny_data: DeviceData, tmp_path: Path
) -> None:
    pinned = json.loads(PIN.read_text())[f"{space}-{parallel}"]
    assert seeded_trials(space, parallel, tiny_data, tmp_path) == pinned


if __name__ == "__main__":  # regenerate the pin
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import make_mnist_dir

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        split = load_split(make_mnist_dir(root / "data"), "train", verify=False)
        data = DeviceData.with_validation(split, torch.device("cpu"), val_size=100)
        pins = {f"{s}-{p}": seeded_trials(s, p, data, root) for s, p in CASES}
    PIN.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
