"""Commands that use a saved checkpoint: predict, evaluate, demo, export."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mnist_bench.artifacts import checkpoint
from mnist_bench.artifacts.demo import DEMO_FILE
from mnist_bench.artifacts.final import FinalData, evaluate
from mnist_bench.artifacts.predict import predict_files
from mnist_bench.cli.common import (
    DEFAULT_DATA_DIR,
    Background,
    CheckpointPath,
    DataDir,
    NoVerify,
    app,
    make_console,
)
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.output.console import predictions_table
from mnist_bench.training.device import resolve_device


@app.command()
def predict(
    checkpoint_path: CheckpointPath,
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="PNG/JPEG files, any size or mode.")],
    background: Annotated[
        Background, typer.Option(help="Image background: dark (like MNIST), light (ink on paper) or auto-detect.")
    ] = Background.auto,
    top: Annotated[int, typer.Option(help="Most likely digits shown per image.")] = 3,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Classify image files with a saved checkpoint."""
    if not 1 <= top <= 10:
        raise UsageError(f"--top {top}: must be between 1 and 10")
    loaded = checkpoint.load(checkpoint_path)
    predictions = predict_files(loaded.model, images, background=background.value, top=top)
    rows = [p.to_dict() for p in predictions]
    if json_output:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        make_console().print(predictions_table(rows))
    unread = [p.path for p in predictions if p.error is not None]
    blank = [p.path for p in predictions if p.blank]
    if unread or blank:
        parts = [f"{len(unread)} could not be read ({', '.join(unread)})"] if unread else []
        parts += [f"{len(blank)} held no digit ({', '.join(blank)})"] if blank else []
        missed = len(unread) + len(blank)
        typer.echo(f"Error: {missed} of {len(rows)} image(s) not classified: {'; '.join(parts)}", err=True)
        raise typer.Exit(1)


@app.command("evaluate")
def evaluate_cmd(
    checkpoint_path: CheckpointPath,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    no_verify: NoVerify = False,
) -> None:
    """Re-score a checkpoint on the test set (on the CPU) and compare with the accuracy it stored."""
    loaded = checkpoint.load(checkpoint_path)
    data = FinalData.load(data_dir, resolve_device("cpu"), verify=not no_verify)
    measured = evaluate(loaded.model, data.device_data.x_eval, data.device_data.y_eval).accuracy
    stored = loaded.meta.get("test", {}).get("accuracy")
    make_console().print(f"{loaded.path}: test accuracy {measured:.4f} (stored {stored})")
    if stored is not None and measured != stored:
        raise MnistBenchError(f"measured test accuracy {measured} differs from the stored {stored}")


@app.command()
def demo(
    checkpoint_path: CheckpointPath,
    out: Annotated[
        Path | None,
        typer.Option(help="HTML file (or folder) to write.", show_default=f"{DEMO_FILE} beside the checkpoint"),
    ] = None,
) -> None:
    """Write a self-contained page to draw a digit on and see the model's answer live, offline."""
    from mnist_bench.artifacts.demo import write_demo  # noqa: PLC0415

    loaded = checkpoint.load(checkpoint_path)
    path = write_demo(loaded, out or loaded.path.parent / DEMO_FILE)
    make_console().print(f"Demo page written to {path}: open it in a browser (no server needed) and draw a digit.")


class ExportFormat(StrEnum):
    onnx = "onnx"


@app.command("export")
def export_cmd(
    checkpoint_path: CheckpointPath,
    format: Annotated[ExportFormat, typer.Option("--format", help="Model format.")] = ExportFormat.onnx,
    out: Annotated[
        Path | None, typer.Option(help="File to write.", show_default="model.FORMAT beside the checkpoint")
    ] = None,
) -> None:
    """Export a checkpoint for other runtimes: input raw pixels (N, 28, 28), output logits and probabilities."""
    from mnist_bench.artifacts.export import export  # noqa: PLC0415

    loaded = checkpoint.load(checkpoint_path)
    path = export(loaded, out or loaded.path.parent / f"model.{format.value}", format=format.value)
    make_console().print(
        f"Exported {loaded.config.model.layers} to {path}: input 'pixels' float32 (N, 28, 28) 0-255, "
        "outputs 'logits' and 'probabilities' (N, 10)."
    )
