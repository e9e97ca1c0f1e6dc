"""What a training is: its frozen ``TrainConfig`` (what is trained) and ``Runtime`` (how fast).

Both are plain data, built from command-line options, a space file's sample or a
checkpoint's JSON; the trainer (``training.trainer``) and the step runners (``training.step_runners``) take
them and never see an Optuna trial. ``TrainConfig.to_dict`` and ``from_dict`` are the one
way a config is stored and read back (checkpoints, saved training states).

A runtime's two choices with names are declared here once, as the optimizers and schedules
are in theirs: ``PRECISIONS`` (``--precision``: what each asks of the device) and
``STEPS`` (``--steps``: what each means for ``Runtime.graphs`` and the GPU self-check).
The runtime's validation, the CLI's choices and help, doctor and the self-check read them;
an unknown name is an error naming the known ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from mnist_bench.augment import DEFAULT_DEFORM, Deform, augment_spec
from mnist_bench.errors import registered
from mnist_bench.model import ModelConfig
from mnist_bench.optimizers import OPTIMIZERS, optimizer_spec
from mnist_bench.schedules import schedule_spec


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig  # layer widths
    optimizer: str  # a name of optimizers.OPTIMIZERS
    lr: float  # learning rate
    momentum: float = 0.0  # momentum, for an optimizer that takes one (SGD); else 0
    batch_size: int = 64  # images per optimizer step
    epochs: int = 10  # passes over the training images (at most, when pruned)
    seed: int = 0  # weight init, batch order and augmentation
    # The extended space's regularizers; the defaults leave training plain.
    weight_decay: float = 0.0  # L2 (SGD) or decoupled (AdamW), for an optimizer that takes it; else 0
    schedule: str = "constant"  # learning rate per step: a name of schedules.SCHEDULES
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    augment: str = "none"  # a name of augment.AUGMENTS; training batches only
    max_norm: float | None = None  # cap on each hidden unit's incoming weight norm (Srivastava et al.)
    deform: Deform = DEFAULT_DEFORM  # strengths of the augmentation's deformations

    def __post_init__(self) -> None:
        spec = optimizer_spec(self.optimizer)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr} must be a positive number")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1)")
        if not spec.momentum and self.momentum:
            takes = ", ".join(s.name for s in OPTIMIZERS.values() if s.momentum)
            raise ValueError(f"momentum={self.momentum} applies to {takes} only, not {self.optimizer}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0")
        if not spec.weight_decay and self.weight_decay:
            takes = ", ".join(f"{s.name} ({s.weight_decay})" for s in OPTIMIZERS.values() if s.weight_decay)
            raise ValueError(f"weight_decay={self.weight_decay}: {self.optimizer} takes none; use {takes}")
        schedule_spec(self.schedule)
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        augment_spec(self.augment)
        if self.max_norm is not None and not self.max_norm > 0:
            raise ValueError(f"max_norm={self.max_norm} must be > 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values, in the layout checkpoints have always stored: the
        model's fields (``hidden``, ``dropout``) beside the training's, ``deform`` a dict."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "deform")}
        values.update({f.name: getattr(self.model, f.name) for f in fields(self.model)})
        values["hidden"] = list(self.model.hidden)
        values["deform"] = asdict(self.deform)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The inverse of ``to_dict``. A key an earlier version did not write takes its
        default (plain training); an unknown one is a TypeError, never dropped."""
        values = dict(values)
        model = {f.name: values.pop(f.name) for f in fields(ModelConfig) if f.name in values}
        model["hidden"] = tuple(model["hidden"])
        deform = Deform(**values.pop("deform", {}))
        return cls(model=ModelConfig(**model), deform=deform, **values)

    def summary(self) -> dict[str, Any]:
        """Flat, table-friendly view (no nested dataclasses)."""
        return {
            "layers": self.model.layers,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "momentum": self.momentum if optimizer_spec(self.optimizer).momentum else None,
            "batch_size": self.batch_size,
            "dropout": self.model.dropout,
            "weight_decay": self.weight_decay,
            "schedule": self.schedule,
            "label_smoothing": self.label_smoothing,
            "augment": self.augment,
            "max_norm": self.max_norm,
            "epochs": self.epochs,
            "seed": self.seed,
            "n_params": self.model.n_params,
        }


def _any_device(device: torch.device) -> None:
    """fp32 trains everywhere."""


def _needs_ampere(device: torch.device) -> None:
    if not (device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8):
        raise ValueError(f"precision=tf32 needs a CUDA GPU of compute capability 8.0 or newer, not {device}")


def _needs_bf16(device: torch.device) -> None:
    # Every CPU autocasts to bfloat16 (fast only with AMX or AVX-512 BF16: doctor says which is fastest).
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision=bf16 is not supported on {torch.cuda.get_device_name(device)}")


@dataclass(frozen=True)
class PrecisionSpec:
    """One ``--precision``: its name, what it needs of the device, and its line of help."""

    name: str  # what runtimes, the CLI and doctor's figures say
    help: str  # one line, for help and docs
    check: Callable[[torch.device], None]  # a one-line ValueError where ``device`` cannot train in it


PRECISIONS: dict[str, PrecisionSpec] = {
    spec.name: spec
    for spec in (
        PrecisionSpec("fp32", "float32 throughout", _any_device),
        PrecisionSpec("tf32", "CUDA matmuls in TF32, on Ampere or newer", _needs_ampere),
        PrecisionSpec("bf16", "autocast to bfloat16", _needs_bf16),
    )
}


def precision_spec(name: str) -> PrecisionSpec:
    """The registered precision ``name``; a ValueError naming the known ones otherwise."""
    return registered(PRECISIONS, "precision", name)


@dataclass(frozen=True)
class StepsSpec:
    """One ``--steps`` mode: how a training's steps run on a CUDA GPU (a CPU runs them eagerly)."""

    name: str  # what the CLI and the self-check say
    help: str  # one line, for help and docs
    graphs: bool  # Runtime.graphs: steps captured as CUDA graphs and replayed (False: launched op by op)
    # The fast paths (graphed steps, trainings in flight) wait for the machine's one-time
    # self-check and are turned off where it failed (``measure.selfcheck.trusted``);
    # False: they run as asked, unchecked.
    self_check: bool


STEPS: dict[str, StepsSpec] = {
    spec.name: spec
    for spec in (
        StepsSpec(
            "auto",
            "replayed as CUDA graphs, trainings side by side, once a one-time self-check has shown on this "
            "machine that they train as eager ones",
            graphs=True,
            self_check=True,
        ),
        StepsSpec("graphed", "the same, unchecked", graphs=True, self_check=False),
        StepsSpec("eager", "launched op by op", graphs=False, self_check=False),
    )
}


def steps_spec(name: str) -> StepsSpec:
    """The registered steps mode ``name``; a ValueError naming the known ones otherwise."""
    return registered(STEPS, "steps", name)


@dataclass(frozen=True)
class Runtime:
    """How steps execute; none of it changes what is trained, only how fast."""

    precision: str = "fp32"  # a name of PRECISIONS
    compile: bool = False  # torch.compile the model (CUDA graphs on CUDA via reduce-overhead)
    graphs: bool = True  # on CUDA, capture each training's step as a CUDA graph and replay it (training.step_runners)
    # On a CPU, run the graphed runner's static step (warm-up and undo included) without a
    # graph, where it stands in for one: doctor and the tests check it against eager steps.
    static_on_cpu: bool = False
    # On CUDA, several trainings may run side by side (a retrain's seeds); off where the
    # machine's self-check (``measure.selfcheck``) found trainings in flight to differ from alone.
    side_by_side: bool = True

    def __post_init__(self) -> None:
        precision_spec(self.precision)

    def check(self, device: torch.device) -> None:
        """Refuse what the device cannot do, before any training starts."""
        precision_spec(self.precision).check(device)
