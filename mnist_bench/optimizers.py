"""The optimizers a training may use: one registry entry each, and the update it makes.

Everything that names an optimizer derives from ``OPTIMIZERS``: the config's validation,
the search space's sampling (each entry names its space fields), the CLI's choices,
checkpoints, ``describe`` and the docs. An unknown name is an error naming the known
ones, never a fallback to another optimizer.

An entry's ``build`` makes the ``Update`` both step runners call (``training.step``), so
an eager step and a captured one make the very same update:

- with rates as Python floats (a CPU): torch's fused optimizer, one pass over each tensor
  (foreach took 2 to 4 times as long);
- with rates in device tensors (CUDA, where a captured graph reads the step's rate from
  the device, and so the eager CUDA step too): Adam(W) fused and capturable, SGD our own
  ``sgd_step``, since torch's SGD cannot be captured with a tensor rate.

Adding an optimizer: one ``OptimizerSpec`` below (its names, its default search ranges,
from which the search space gets its fields, its builder, and what one-cycle cycles in
it), and its test: the registry's tests (tests/test_choices.py, tests/test_optimizers.py)
drive every registered name through the whole user path without a line changed. An
update with float rates, or a torch optimizer not built capturable, cannot be captured:
on CUDA it trains eagerly, and its trials say why (docs/development.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mnist_bench.errors import registered
from mnist_bench.schedules import schedule_spec


def quiet_capturable_warning() -> None:
    """Adam built for capture warns whenever it steps outside a capture: expected here (the
    warm-up, the last partial batch, eager CUDA steps), so that one warning is filtered,
    process-wide."""
    warnings.filterwarnings("ignore", message=r".*capturable=True.*", category=UserWarning)


def sgd_step(
    params: Sequence[torch.Tensor],
    buffers: Sequence[torch.Tensor],
    lr: float | torch.Tensor,
    momentum: float | torch.Tensor,
    *,
    weight_decay: float,
) -> None:
    """torch.optim.SGD's update (dampening 0, not Nesterov), rate and momentum as floats or device tensors.

    SGD itself cannot be captured with a tensor rate; this can, so a schedule runs inside
    the graph. ``buffers`` empty: no momentum. Buffers start at zero, so the first update
    is the gradient, as SGD's.
    """
    params, buffers = list(params), list(buffers)
    direction = [p.grad for p in params]
    assert all(g is not None for g in direction)
    with torch.no_grad():
        if weight_decay:
            direction = list(torch._foreach_add(direction, params, alpha=weight_decay))  # type: ignore[arg-type]
        if buffers:
            torch._foreach_mul_(buffers, momentum)  # type: ignore[call-overload]
            torch._foreach_add_(buffers, direction)  # type: ignore[arg-type]
            direction = buffers  # type: ignore[assignment]
        torch._foreach_sub_(params, torch._foreach_mul(direction, lr))  # type: ignore[arg-type, call-overload]


class Update:
    """One optimizer update of a training's parameters, at the rates its schedule sets.

    ``rates`` holds the step's learning rate, and momentum where the update reads one from
    there (our own SGD): Python floats, or device scalars that a schedule fills on the device
    and a graph reads on replay (``step.Rates``).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        *,
        optimizer: torch.optim.Optimizer | None,
        rates: dict[str, Any],
        buffers: list[torch.Tensor] | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)
        self.optimizer, self.rates, self.weight_decay = optimizer, rates, weight_decay
        self.buffers = buffers or []  # our own SGD's momentum buffers (tensor rates only)

    def holds(self, rate: str) -> bool:
        """Whether the update has ``rate`` ("lr", "momentum" or "beta1") for a schedule to set."""
        group = self.optimizer.param_groups[0] if self.optimizer is not None else None
        if rate == "lr":
            return True
        if rate == "momentum":
            return "momentum" in (self.rates if group is None else group)
        return rate == "beta1" and group is not None and "betas" in group

    def set_rates(self, *, lr: float | None = None, momentum: float | None = None, beta1: float | None = None) -> None:
        """Set the next step's rates from the host (float rates): each one only where given,
        and only into what the update has (``holds``; ``step.Rates`` asks first)."""
        group = self.optimizer.param_groups[0] if self.optimizer is not None else None
        if lr is not None:
            self.rates["lr"] = lr
            if group is not None:
                group["lr"] = lr
        if momentum is not None:
            self.rates["momentum"] = momentum
            if group is not None:
                group["momentum"] = momentum
        if beta1 is not None:
            assert group is not None, "beta1 is a torch optimizer's"
            group["betas"] = (beta1, *group["betas"][1:])

    def step(self) -> None:
        if self.optimizer is not None:
            self.optimizer.step()
        else:
            sgd_step(
                self.params, self.buffers, self.rates["lr"], self.rates["momentum"], weight_decay=self.weight_decay
            )

    def state_tensors(self) -> list[dict[str, torch.Tensor]]:
        """Per parameter, the update's state (moments, momentum buffers, step counts)."""
        if self.optimizer is None:
            return [{"momentum_buffer": b} for b in self.buffers] if self.buffers else [{} for _ in self.params]
        return [dict(self.optimizer.state[p]) for p in self.params]

    def state(self) -> list[dict[str, torch.Tensor]]:
        return [
            {k: v.detach().cpu() for k, v in s.items() if isinstance(v, torch.Tensor)} for s in self.state_tensors()
        ]

    def restore(self, saved: list[dict[str, torch.Tensor]]) -> None:
        """Copy ``saved`` into the update's state in place (a captured graph holds its addresses)."""
        with torch.no_grad():
            for i, (p, values) in enumerate(zip(self.params, saved, strict=True)):
                for key, value in values.items():
                    if not isinstance(value, torch.Tensor):  # torch's SGD keeps None without momentum
                        continue
                    if self.optimizer is None:
                        if self.buffers:
                            self.buffers[i].copy_(value)
                    elif key in self.optimizer.state[p]:
                        self.optimizer.state[p][key].copy_(value)
                    else:  # an eager optimizer makes its state at its first step
                        self.optimizer.state[p][key] = value.to(p.device).clone()

    def reset(self) -> None:
        """Back to a fresh update's state (after a warm-up): moments, buffers and step counts zero."""
        with torch.no_grad():
            for state in self.state_tensors():
                for value in state.values():
                    if isinstance(value, torch.Tensor):  # torch 2.2-2.3's SGD keeps None without momentum
                        value.zero_()


# What one-cycle may cycle in an optimizer besides its learning rate ("": nothing).
CYCLED = ("momentum", "beta1", "")


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer: its names, what it takes, its search ranges and how its update is built."""

    name: str  # what configs, space files, checkpoints and the CLI say
    display: str  # how tables and descriptions name it
    weight_decay: str  # what its weight decay is: "L2", "decoupled", or "" (none: TrainConfig.weight_decay stays 0)
    # The search space's default ranges for it: the space gets a field for each, named after
    # the optimizer (``sgd_lr``), so Optuna never mixes two optimizers' distributions.
    lr_range: tuple[float, float]  # learning rate, log-uniform
    momentum_range: tuple[float, float] | None  # momentum, uniform; None: takes no momentum
    weight_decay_range: tuple[float, float] | None  # log-uniform when open; [0, 0]: none; None: takes none
    kind: Any  # torch's optimizer class
    build: Callable[[OptimizerSpec, list[torch.Tensor], Any, torch.device], Update]  # (spec, params, config, device)
    # What a schedule that cycles momentum (one-cycle) cycles in it, against the learning
    # rate: "momentum" (SGD), "beta1" (Adam's first beta), or "" (nothing: its lr alone).
    cycles: str

    def __post_init__(self) -> None:
        if self.cycles not in CYCLED:
            raise ValueError(f"optimizer {self.name!r}: cycles={self.cycles!r} must be one of {CYCLED}")

    @property
    def momentum(self) -> bool:
        """Takes a momentum (TrainConfig.momentum); others leave it at 0."""
        return self.momentum_range is not None

    @property
    def lr_field(self) -> str:
        return f"{self.name}_lr"

    @property
    def momentum_field(self) -> str | None:
        return f"{self.name}_momentum" if self.momentum_range is not None else None

    @property
    def weight_decay_field(self) -> str | None:
        return f"{self.name}_weight_decay" if self.weight_decay_range is not None else None

    def space_ranges(self) -> dict[str, tuple[float, float]]:
        """The search space's fields for this optimizer, with their default ranges."""
        fields = {self.lr_field: self.lr_range}
        if self.momentum_field is not None and self.momentum_range is not None:
            fields[self.momentum_field] = self.momentum_range
        if self.weight_decay_field is not None and self.weight_decay_range is not None:
            fields[self.weight_decay_field] = self.weight_decay_range
        return fields

    def make(self, params: Iterable[torch.Tensor], config: Any, device: torch.device) -> Update:
        """The update for ``config`` (a ``TrainConfig``) over ``params`` on ``device``."""
        return self.build(self, list(params), config, device)


def _rates(config: Any, device: torch.device, *, tensor: bool, momentum: bool = True) -> dict[str, Any]:
    """The config's learning rate (and momentum), as floats or as device tensors."""
    rates = {"lr": float(config.lr), "momentum": float(config.momentum)} if momentum else {"lr": float(config.lr)}
    if not tensor:
        return rates
    return {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in rates.items()}


def _build_sgd(spec: OptimizerSpec, params: list[torch.Tensor], config: Any, device: torch.device) -> Update:
    if device.type == "cuda":  # tensor rates: our own SGD, which a graph can capture
        # A schedule that cycles momentum (one-cycle) sets it whatever the config says: buffers then too.
        cycled = spec.cycles == "momentum" and schedule_spec(config.schedule).cycles_momentum
        buffers = [torch.zeros_like(p) for p in params] if config.momentum or cycled else []
        return Update(
            params,
            optimizer=None,
            rates=_rates(config, device, tensor=True),
            buffers=buffers,
            weight_decay=config.weight_decay,
        )
    fused = True if device.type == "cpu" else None
    optimizer = spec.kind(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=fused)
    return Update(params, optimizer=optimizer, rates=_rates(config, device, tensor=False))


def _build_adam(spec: OptimizerSpec, params: list[torch.Tensor], config: Any, device: torch.device) -> Update:
    kind = spec.kind
    if device.type == "cuda":  # a tensor rate: fused and capturable, eager or captured alike
        quiet_capturable_warning()  # its eager steps (warm-up, a last partial batch, --steps eager) warn
        # No momentum: one-cycle cycles its beta1, set from the host (a graph cannot follow it).
        rates = _rates(config, device, tensor=True, momentum=False)
        optimizer = kind(params, lr=rates["lr"], weight_decay=config.weight_decay, capturable=True, fused=True)
        return Update(params, optimizer=optimizer, rates=rates)
    fused = True if device.type == "cpu" else None
    optimizer = kind(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return Update(params, optimizer=optimizer, rates=_rates(config, device, tensor=False, momentum=False))


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            "sgd", "SGD", "L2", (1e-3, 0.3), (0.5, 0.99), (0.0, 0.0), torch.optim.SGD, _build_sgd, "momentum"
        ),
        OptimizerSpec("adam", "Adam", "", (1e-4, 1e-2), None, None, torch.optim.Adam, _build_adam, "beta1"),
        OptimizerSpec(
            "adamw", "AdamW", "decoupled", (1e-4, 1e-2), None, (1e-5, 1e-1), torch.optim.AdamW, _build_adam, "beta1"
        ),
    )
}


def optimizer_spec(name: str) -> OptimizerSpec:
    """The registered optimizer ``name``; a ValueError naming the known ones otherwise."""
    return registered(OPTIMIZERS, "optimizer", name)
