"""What a training starts from: its initial weights and its schedule's table (host work,
done on its lane before the exclusive build), and the step it trains with.

``host_start`` draws the initial weights on the CPU from the training's own seeded
generator and computes the rate table; ``make_step`` builds the one step both runners
execute (``step.TrainStep``) from the registry's optimizer and that table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mnist_bench.augment import Augmenter
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.model import build_mlp
from mnist_bench.optimizers import optimizer_spec
from mnist_bench.schedules import RateTable, rate_table
from mnist_bench.training.step import Rates, TrainStep


def initial_weights(config: TrainConfig) -> nn.Module:
    """The config's initial weights, on the CPU, drawn from a generator of its own seeded with
    ``config.seed`` (the numbers ``torch.manual_seed`` gave)."""
    return build_mlp(config.model, generator=torch.Generator().manual_seed(config.seed))


def seeded_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The config's initial weights (``initial_weights``), moved to ``device``."""
    return initial_weights(config).to(device)


def schedule_table(config: TrainConfig, n_train: int) -> RateTable | None:
    """The rates of every step ``config`` takes over ``n_train`` images (None: a constant rate)."""
    return rate_table(config.schedule, config.lr, config.epochs * math.ceil(n_train / config.batch_size))


@dataclass
class HostStart:
    """What a training's fresh start needs and no device does: its initial weights drawn on
    the CPU, and its schedule's rate table. Drawn before the training is built (``host_start``),
    so that a lane can draw it while no build holds the device (see ``lanes``).

    Invariant: one HostStart is one training's. Its build takes the weights (on a CPU ``.to``
    keeps the very tensors, and the training trains them in place): never give one to two.
    """

    config: TrainConfig  # the configuration it was drawn for
    n_train: int  # the training images its table counts steps over
    model: nn.Module | None  # the initial weights on the CPU; None once a build took them
    table: RateTable | None  # the schedule's rate of every step (None: a constant rate)

    def take_model(self) -> nn.Module:
        """The initial weights, once: the training that takes them owns them."""
        if self.model is None:
            raise ValueError(f"the initial weights of seed {self.config.seed} were taken already")
        model, self.model = self.model, None
        return model


def host_start(config: TrainConfig, data: DeviceData) -> HostStart:
    """``config``'s host start over ``data``'s training images: the CPU's part of building it.

    Reads only the data's shape: it runs while other lanes train or build."""
    n_train = data.x_train.shape[0]
    return HostStart(config, n_train, initial_weights(config), schedule_table(config, n_train))


def set_matmul_precision(runtime: Runtime, device: torch.device) -> None:
    if runtime.precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True  # process-wide; fp32 runs set it back
    elif device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False


def make_step(
    model: nn.Module,
    config: TrainConfig,
    data: DeviceData,
    runtime: Runtime,
    *,
    generator: torch.Generator,
    augment: Augmenter,
    table: RateTable | None,
) -> TrainStep:
    """The training step for ``config`` over ``data``'s training images: its update (the
    registry's optimizer) and the schedule's rates, from ``table`` (``schedule_table``:
    computed once, on the host, before the step is built)."""
    device = data.device
    set_matmul_precision(runtime, device)
    spec = optimizer_spec(config.optimizer)
    update = spec.make(model.parameters(), config, device)
    rates = Rates(table, update, device, cycles=spec.cycles)
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    if runtime.compile:
        mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs cut launch overhead
        forward = torch.compile(model, mode=mode)  # type: ignore[assignment]
    return TrainStep(
        model,
        config,
        update,
        rates,
        data.x_train,
        data.y_train,
        generator=generator,
        augment=augment,
        precision=runtime.precision,
        forward=forward,
    )
