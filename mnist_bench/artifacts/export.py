"""A checkpoint in a format other runtimes load: ONNX (the ``onnx`` extra).

The exported graph takes what a user has, pixels, and does the normalization itself:
input ``pixels``, float32 (N, 28, 28), 0-255, light digit on black as in MNIST; outputs
``logits`` and ``probabilities``, float32 (N, 10). The batch size is free.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from mnist_bench.artifacts.checkpoint import Checkpoint
from mnist_bench.data import IMAGE_SIDE, normalize
from mnist_bench.errors import MnistBenchError, UsageError

FORMATS = ("onnx",)
INPUT = "pixels"
OUTPUTS = ("logits", "probabilities")


class PixelsToDigits(nn.Module):
    """Raw pixels in, (logits, probabilities) out: normalization travels with the model."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.mlp(normalize(pixels))
        return logits, logits.softmax(1)


def export_onnx(ckpt: Checkpoint, path: Path) -> Path:
    """Write one self-contained .onnx file (weights inside, no side file)."""
    try:
        import onnxscript  # noqa: F401, PLC0415  (what torch's exporter needs; the `onnx` extra)
    except ImportError:
        raise MnistBenchError('ONNX export needs the onnx extra: pip install -e ".[onnx]"') from None
    model = PixelsToDigits(ckpt.model).eval()
    example = torch.zeros(2, IMAGE_SIDE, IMAGE_SIDE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The exporter narrates each stage on stdout and warns about torchvision ops; the
        # command prints its own one-line result.
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecation notes from inside torch.export
                torch.onnx.export(
                    model,
                    (example,),
                    str(path),
                    input_names=[INPUT],
                    output_names=list(OUTPUTS),
                    dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}},
                    external_data=False,
                    dynamo=True,
                )
        finally:
            quiet.setLevel(level)
    except OSError as exc:
        raise MnistBenchError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def export(ckpt: Checkpoint, path: Path, *, format: str = "onnx") -> Path:
    if format not in FORMATS:
        raise UsageError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    return export_onnx(ckpt, path)
