"""What a seed gave: seeded tiny searches, pinned trial for trial.

The redesign that moved every module and merged the two steps and the two search loops
must leave a seeded search's trials as they were. ``tests/pins/seeded_search.json`` holds
what these searches stored before the first move: parameters, states, objective values,
every epoch's validation accuracy, and every epoch's training loss to three decimals. A
change that alters the random streams or the training's arithmetic changes the pin, on
purpose and in its own commit, together with the version (``__version__``).

``tests/pins/seeded_steps.json`` holds what the pruners saw, pinned before trials could
report more than once an epoch: every trial's intermediate values with their steps (one a
epoch, the step its number from 1), its state, its epochs and the reason it stopped, with
the median and the Hyperband pruner, so the default of one report an epoch stays as it was.

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
STEPS_PIN = Path(__file__).with_name("pins") / "seeded_steps.json"
STEP_CASES = [(pruner, parallel) for pruner in ("median", "hyperband") for parallel in (1, 2)]


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


def reported_steps(pruner: str, parallel: int, data: DeviceData, folder: Path) -> list[dict[str, Any]]:
    """A seeded tiny search's trials as its pruner saw them: every step it was told of."""
    settings = SearchSettings(
        study=f"steps-{pruner}-{parallel}",
        storage=f"sqlite:///{folder / 'steps.db'}",
        trials=10,
        epochs=3,
        pruner=pruner,
        seed=0,
        val_size=100,
        parallel=parallel,
    )
    study = run_trials(settings, SPACES["small"], data).study
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "values": t.values,
            "intermediate": {str(step): value for step, value in sorted(t.intermediate_values.items())},
            "epochs_run": t.user_attrs.get("epochs_run"),
            "best_epoch": t.user_attrs.get("best_epoch"),
            "reason": t.user_attrs.get("reason"),
        }
        for t in study.trials
    ]


@pytest.mark.parametrize(("pruner", "parallel"), STEP_CASES, ids=[f"{p}-parallel{k}" for p, k in STEP_CASES])
def test_a_seeded_search_reports_the_pinned_steps(
    pruner: str, parallel: int, tiny_data: DeviceData, tmp_path: Path
) -> None:
    pinned = json.loads(STEPS_PIN.read_text())[f"{pruner}-{parallel}"]
    assert reported_steps(pruner, parallel, tiny_data, tmp_path) == pinned


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
        steps = {f"{p}-{k}": reported_steps(p, k, data, root) for p, k in STEP_CASES}
    PIN.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    STEPS_PIN.write_text(json.dumps(steps, indent=1, sort_keys=True) + "\n")
