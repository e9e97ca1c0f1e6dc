"""Learning-rate schedules: one registry entry each, a pure function of the step.

A training computes its schedule once, as a table of every step's rate (and, for
one-cycle, momentum), which the eager and the graphed runner both follow
(``training.step.Rates``); nothing steps an optimizer to find it. Each function does
torch's own scheduler arithmetic in Python floats, in torch's order (cosine and
exponential are recursive there, one-cycle a closed form), so a table holds torch's
numbers to the bit: tests/test_schedules.py holds each one to torch's scheduler.

Everything that names a schedule (the config's validation, the search space, the CLI's
choices) derives from ``SCHEDULES``; an unknown name is an error naming the known ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from mnist_bench.errors import registered

EXPONENTIAL_FINAL = 0.01  # the exponential schedule ends at this fraction of lr
# One-cycle as torch.optim.lr_scheduler.OneCycleLR's defaults have it.
ONECYCLE_PCT_START, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4
ONECYCLE_MOMENTUM = (0.85, 0.95)  # (base, max): momentum, or Adam's beta1, falls as lr rises


@dataclass(frozen=True)
class RateTable:
    """The rate of every step of a training; one-cycle's momentum of every step, or None."""

    lr: tuple[float, ...]
    momentum: tuple[float, ...] | None = None


def _cosine(lr: float, total: int) -> RateTable:
    """CosineAnnealingLR(T_max=total, eta_min=0): its recursive form, as torch steps it."""
    eta_min, t_max = 0.0, total
    rates = [lr]
    for epoch in range(1, total):
        last = rates[-1]
        if (epoch - 1 - t_max) % (2 * t_max) == 0:
            rates.append(last + (lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2)
        else:
            rates.append(
                (1 + math.cos(math.pi * epoch / t_max))
                / (1 + math.cos(math.pi * (epoch - 1) / t_max))
                * (last - eta_min)
                + eta_min
            )
    return RateTable(tuple(rates))


def _exponential(lr: float, total: int) -> RateTable:
    """ExponentialLR: a constant factor per step, down to EXPONENTIAL_FINAL of lr at the end."""
    gamma = EXPONENTIAL_FINAL ** (1 / max(total, 1))
    rates = [lr]
    for _ in range(1, total):
        rates.append(rates[-1] * gamma)
    return RateTable(tuple(rates))


def _anneal_cos(start: float, end: float, pct: float) -> float:
    cos_out = math.cos(math.pi * pct) + 1
    return end + (start - end) / 2.0 * cos_out


def _onecycle(lr: float, total: int) -> RateTable:
    """OneCycleLR(max_lr=lr, total_steps=total) with torch's defaults, momentum cycled."""
    initial = lr / ONECYCLE_DIV
    low, high = ONECYCLE_MOMENTUM
    phases = (  # (end step, lr from, lr to, momentum from, momentum to)
        (float(ONECYCLE_PCT_START * total) - 1, initial, lr, high, low),
        (total - 1, lr, initial / ONECYCLE_FINAL_DIV, low, high),
    )
    rates, momenta = [], []
    for step in range(total):
        start = 0.0
        for i, (end, lr_from, lr_to, m_from, m_to) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = (step - start) / (end - start)
                rates.append(_anneal_cos(lr_from, lr_to, pct))
                momenta.append(_anneal_cos(m_from, m_to, pct))
                break
            start = end
    return RateTable(tuple(rates), tuple(momenta))


@dataclass(frozen=True)
class ScheduleSpec:
    name: str  # what configs, space files, checkpoints and the CLI say
    description: str  # one line, for help and docs
    table: Callable[[float, int], RateTable] | None  # (lr, total steps) -> the table; None: constant
    # Its table has a momentum column too: set, each step, into what the optimizer's entry says
    # it cycles (``OptimizerSpec.cycles``: SGD's momentum, Adam's beta1, or nothing).
    cycles_momentum: bool = False


SCHEDULES: dict[str, ScheduleSpec] = {
    spec.name: spec
    for spec in (
        ScheduleSpec("constant", "the same rate every step", None),
        ScheduleSpec("cosine", "cosine from lr down to 0", _cosine),
        ScheduleSpec(
            "onecycle", "one cycle: up to lr, then down to lr/250,000; momentum the other way", _onecycle, True
        ),
        ScheduleSpec("exponential", "a constant factor per step, down to 1% of lr", _exponential),
    )
}


def schedule_spec(name: str) -> ScheduleSpec:
    """The registered schedule ``name``; a ValueError naming the known ones otherwise."""
    return registered(SCHEDULES, "schedule", name)


def rate_table(name: str, lr: float, total_steps: int) -> RateTable | None:
    """Every step's rates under schedule ``name``; None for a constant rate."""
    spec = schedule_spec(name)
    return spec.table(lr, total_steps) if spec.table is not None else None
