"""The multilayer perceptron, built from a frozen config and nothing else."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from mnist_bench.data import IMAGE_SIDE, N_CLASSES

INPUT_SIZE = IMAGE_SIDE * IMAGE_SIDE
MAX_DEPTH = 8  # the default space stays at 1-4 hidden layers; the frontier space goes deeper


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple[int, ...]  # width of each hidden layer, input side first (1 to MAX_DEPTH layers)
    dropout: float = 0.0  # dropout after every hidden ReLU while training (0: none)

    def __post_init__(self) -> None:
        if not 1 <= len(self.hidden) <= MAX_DEPTH:
            raise ValueError(f"hidden={self.hidden} must have 1 to {MAX_DEPTH} layers")
        if any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden={self.hidden} widths must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    @property
    def layers(self) -> str:
        """The architecture as people write it: '784-512-256-10'."""
        return "-".join(str(w) for w in (INPUT_SIZE, *self.hidden, N_CLASSES))

    @property
    def n_params(self) -> int:
        sizes = (INPUT_SIZE, *self.hidden, N_CLASSES)
        return sum(a * b + b for a, b in pairwise(sizes))

    @classmethod
    def parse(cls, spec: str) -> ModelConfig:
        """'784-128-64-10', '128-64' or '128,64' -> ModelConfig((128, 64))."""
        try:
            widths = [int(part) for part in spec.replace(",", "-").split("-") if part.strip()]
        except ValueError:
            raise ValueError(f"layers {spec!r} must be integers joined by '-'") from None
        if len(widths) >= 2 and widths[0] == INPUT_SIZE and widths[-1] == N_CLASSES:
            widths = widths[1:-1]
        return cls(hidden=tuple(widths))


# Beyond the mean, this many standard deviations (and a margin) of drops are drawn: a batch
# with more drops than that (odds below 1e-20) drops only the first of them.
_DROP_SIGMAS, _DROP_MARGIN = 10, 32


def drop_positions(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Which of ``n`` units dropout zeroes at rate ``p``: sorted flat indices; ``n`` pads the end.

    Each unit is dropped independently with probability ``p``, drawn as the gaps between
    drops (geometric, by the inverse of its distribution) rather than a uniform number per
    unit: at p = 0.0056 a batch of 256 x 800 units needs ~1,600 draws, not 205,000. The
    number of draws is fixed by ``n`` and ``p`` alone, so the shapes never change and a
    CUDA graph can capture it.
    """
    mean = n * p
    draws = math.ceil(mean + _DROP_SIGMAS * math.sqrt(mean) + _DROP_MARGIN)
    u = torch.rand(draws, generator=generator, device=device, dtype=torch.float64)
    gaps = torch.floor(torch.log1p(-u) / math.log1p(-p)).long()  # kept units before each drop
    return torch.cumsum(gaps + 1, 0).sub_(1).clamp_(max=n)


def dropout_mask(dropped: torch.Tensor, value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` for each unit of ``like``, 0 at ``dropped`` (whose padding lands in a spare cell)."""
    mask = torch.full((like.numel() + 1,), value, dtype=like.dtype, device=like.device)
    return mask.index_fill_(0, dropped, 0)[:-1].view(like.shape)


class SeededDropout(nn.Dropout):
    """Dropout whose masks come from a given generator (the trial's), not the global one.

    Trials trained side by side in threads would otherwise draw from one shared global
    generator in an order set by timing; with their own generator each trial's masks are
    the same however it runs, and a CUDA graph can capture them. The dropped units are
    drawn sparsely (``drop_positions``): the rates searched are small, and a uniform
    number per unit cost more than a tenth of an epoch. The mask is applied by native
    multiplies (no Python in autograd's backward): one each way in fp32. No parameters:
    the state_dict is that of ``nn.Dropout``.
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.generator is None:
            return super().forward(x)
        dropped = drop_positions(x.numel(), self.p, self.generator, x.device)
        scale = 1 / (1 - self.p)
        if x.dtype in (torch.float32, torch.float64):
            return x * dropout_mask(dropped, scale, x)
        # bf16 or fp16 would round the scale held in a mask: keep-or-zero, then the scale as a float.
        return (x * dropout_mask(dropped, 1.0, x)).mul(scale)


def use_generator(model: nn.Module, generator: torch.Generator) -> None:
    """Make every dropout layer of ``model`` draw its masks from ``generator``."""
    for module in model.modules():
        if isinstance(module, SeededDropout):
            module.generator = generator


def seeded_linear(width_in: int, width_out: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear(width_in, width_out)`` initialised from ``generator``, not the process-wide one.

    Made without drawing (``skip_init``), then given ``nn.Linear.reset_parameters``'s draws
    in its order: a private generator seeded with s draws what ``torch.manual_seed(s)``
    then ``nn.Linear`` did, so the weights of a seed are those they always were.
    """
    layer = nn.utils.skip_init(nn.Linear, width_in, width_out)
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(width_in)
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def build_mlp(config: ModelConfig, *, generator: torch.Generator) -> nn.Sequential:
    """Linear-ReLU(-Dropout) blocks, then a linear layer to the 10 logits, on the CPU.

    Every initial weight comes from ``generator``: a training owns its random numbers, and
    trainings are built on several threads at once (see ``training.lanes``). The ReLU works in
    place on the linear layer's output, which nothing else keeps (one buffer less a layer).
    """
    layers: list[nn.Module] = []
    width_in = INPUT_SIZE
    for width in config.hidden:
        layers += [seeded_linear(width_in, width, generator), nn.ReLU(inplace=True)]
        if config.dropout:
            layers.append(SeededDropout(config.dropout))
        width_in = width
    layers.append(seeded_linear(width_in, N_CLASSES, generator))
    return nn.Sequential(*layers)
