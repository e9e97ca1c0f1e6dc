"""The schedules' tables against torch's own schedulers, to the bit."""

from __future__ import annotations

import pytest
import torch

from mnist_bench.schedules import EXPONENTIAL_FINAL, SCHEDULES, rate_table, schedule_spec


def torch_rates(name: str, optimizer_kind: type[torch.optim.Optimizer], lr: float, total: int) -> list[tuple]:
    """(lr, momentum) of every step, read from torch's scheduler stepped after each step."""
    stand_in = torch.nn.Linear(1, 1)
    kwargs = {"momentum": 0.9} if optimizer_kind is torch.optim.SGD else {}
    optimizer = optimizer_kind(stand_in.parameters(), lr=lr, **kwargs)
    schedule = {
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total),
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(
            optimizer, gamma=EXPONENTIAL_FINAL ** (1 / max(total, 1))
        ),
    }[name]()
    group, rates = optimizer.param_groups[0], []
    for _ in range(total):
        momentum = group["momentum"] if "momentum" in group else group["betas"][0]
        rates.append((group["lr"], momentum))
        optimizer.step()  # no gradients: nothing moves, the schedule does
        schedule.step()
    return rates


# One-cycle needs a few steps: torch divides by the length of its warm-up (0.3 of them, less 1).
CASES = [
    (name, total)
    for name, spec in SCHEDULES.items()
    if spec.table is not None
    for total in (1, 7, 60, 1563, 4000)
    if not (name == "onecycle" and total < 7)
]


@pytest.mark.parametrize(("name", "total"), CASES)
@pytest.mark.parametrize("kind", [torch.optim.SGD, torch.optim.Adam])
def test_a_table_holds_torchs_numbers_to_the_bit(name: str, total: int, kind: type[torch.optim.Optimizer]) -> None:
    table = rate_table(name, 0.05, total)
    assert table is not None and len(table.lr) == total
    theirs = torch_rates(name, kind, 0.05, total)
    assert list(table.lr) == [lr for lr, _ in theirs]  # ==, not approx: the same floats
    if schedule_spec(name).cycles_momentum:
        assert table.momentum is not None and list(table.momentum) == [m for _, m in theirs]
    else:
        assert table.momentum is None


def test_constant_has_no_table_and_an_unknown_name_says_the_known_ones() -> None:
    assert rate_table("constant", 0.1, 10) is None
    with pytest.raises(ValueError, match=r"schedule='warmup' must be one of \('constant', 'cosine'"):
        rate_table("warmup", 0.1, 10)
