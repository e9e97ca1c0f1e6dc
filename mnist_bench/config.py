"""What a training is: its frozen ``TrainConfig`` (what is trained) and ``Runtime`` (how fast).

Both are plain data, built from command-line options, a space file's sample or a
checkpoint's JSON; the trainer (``training.trainer``) and the step runners (``training.step_runners``) take
them and never see an Optuna trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mnist_bench.augment import DEFAULT_DEFORM, Deform, augment_spec
from mnist_bench.model import ModelConfig
from mnist_bench.optimizers import OPTIMIZERS, optimizer_spec
from mnist_bench.schedules import schedule_spec

PRECISIONS = ("fp32", "tf32", "bf16")


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


@dataclass(frozen=True)
class Runtime:
    """How steps execute; none of it changes what is trained, only how fast."""

    precision: str = "fp32"  # fp32; tf32 (CUDA matmuls in TF32); bf16 (autocast to bfloat16)
    compile: bool = False  # torch.compile the model (CUDA graphs on CUDA via reduce-overhead)
    graphs: bool = True  # on CUDA, capture each training's step as a CUDA graph and replay it (training.step_runners)
    # On a CPU, run the graphed runner's static step (warm-up and undo included) without a
    # graph, where it stands in for one: doctor and the tests check it against eager steps.
    static_on_cpu: bool = False
    # On CUDA, several trainings may run side by side (a retrain's seeds); off where the
    # machine's self-check (``measure.selfcheck``) found trainings in flight to differ from alone.
    side_by_side: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} must be one of {PRECISIONS}")

    def check(self, device: torch.device) -> None:
        """Refuse what the device cannot do, before any training starts."""
        if self.precision == "tf32" and not (
            device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
        ):
            raise ValueError(f"precision=tf32 needs a CUDA GPU of compute capability 8.0 or newer, not {device}")
        if self.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision=bf16 is not supported on {torch.cuda.get_device_name(device)}")
