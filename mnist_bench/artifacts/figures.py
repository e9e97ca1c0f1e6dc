"""PNG figures of a final evaluation: confusion matrix and a grid of test predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    # Figure() without pyplot: no GUI backend, no global state, safe on headless machines.
    from matplotlib.figure import Figure  # noqa: PLC0415  (matplotlib is slow to import)

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def confusion_png(confusion: Sequence[Sequence[int]], path: Path, *, title: str) -> Path:
    fig = _figure(6.5, 5.5)
    ax = fig.add_subplot()
    matrix = torch.tensor(confusion, dtype=torch.float64)
    image = ax.imshow(matrix.log1p().numpy(), cmap="Blues")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            count = int(matrix[i, j])
            if count:
                color = "white" if i == j else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true", title=title, xticks=range(10), yticks=range(10))
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.savefig(path)
    return path


def predictions_png(
    images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, path: Path, *, n: int = 48, title: str
) -> Path:
    """The first ``n`` misclassified test images (red), then correct ones (black) to fill the grid."""
    wrong = (predicted != labels).nonzero().flatten()
    right = (predicted == labels).nonzero().flatten()
    chosen = torch.cat([wrong[: n // 2], right])[:n]
    cols = 8
    rows = max(1, -(-len(chosen) // cols))
    fig = _figure(cols * 1.1, rows * 1.25 + 0.4)
    fig.suptitle(title)
    for k, index in enumerate(chosen.tolist()):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(images[index].numpy(), cmap="gray_r")
        ok = bool(predicted[index] == labels[index])
        ax.set_title(
            f"{int(predicted[index])} (true {int(labels[index])})",
            fontsize=8,
            color="black" if ok else "red",
        )
        ax.axis("off")
    fig.savefig(path)
    return path


def deformations_png(originals: torch.Tensor, deformed: torch.Tensor, path: Path, *, title: str) -> Path:
    """Originals in the first row, one row per deformed draw below: (n, 28, 28) and (variants, n, 28, 28)."""
    variants, n = deformed.shape[0], originals.shape[0]
    fig = _figure(n * 0.9 + 0.4, (variants + 1) * 0.95 + 0.5)
    fig.suptitle(title, fontsize=9)
    for row, batch in enumerate([originals, *deformed]):
        for col in range(n):
            ax = fig.add_subplot(variants + 1, n, row * n + col + 1)
            ax.imshow(batch[col].numpy(), cmap="gray_r", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel("original" if row == 0 else f"draw {row}", fontsize=7)
    fig.savefig(path)
    return path
