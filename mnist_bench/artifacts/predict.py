"""Classify image files with a checkpoint, after turning them into MNIST-style digits."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from mnist_bench.data import IMAGE_SIDE, normalize
from mnist_bench.errors import one_line

Background = Literal["auto", "dark", "light"]
DIGIT_BOX = 20  # MNIST digits fit a 20x20 box, centred by mass in the 28x28 frame
# An image whose darkest and brightest pixels differ by less than this (of 255) is one
# flat colour: paper, a fill, noise around it. It becomes an all-black 28x28, and a
# 28x28 with no lit pixel is "no digit": demo_page.html applies the very same rule.
MIN_CONTRAST = 32
BLANK = "no digit found (blank image)"


class ImageError(Exception):
    """An image file that cannot be read; reported for that file alone."""


def to_mnist(image: np.ndarray, *, background: Background = "auto") -> np.ndarray:
    """A grayscale array (any size) -> uint8 28x28, light digit on a dark background.

    ``background`` says what the input looks like; ``auto`` takes the border's median
    brightness (paper scans and drawings are dark-on-light, MNIST is light-on-dark).
    Images that are not 28x28 are cropped to their ink, scaled to fit 20x20 and
    centred by mass, as MNIST was made. An image of one flat colour (less than
    MIN_CONTRAST between its extremes) has no ink: all zeros, which ``is_blank`` tells.
    """
    from PIL import Image  # noqa: PLC0415

    pixels = image.astype(np.float64)
    if pixels.size == 0 or pixels.max() - pixels.min() < MIN_CONTRAST:
        return np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)  # no ink: blank
    if background == "auto":
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        background = "light" if np.median(border) > 127 else "dark"
    if background == "light":
        pixels = 255.0 - pixels
    if pixels.shape == (IMAGE_SIDE, IMAGE_SIDE):
        return pixels.clip(0, 255).astype(np.uint8)

    ink = pixels > 0.2 * pixels.max() if pixels.max() > 0 else np.zeros_like(pixels, dtype=bool)
    out = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
    if not ink.any():
        return out.astype(np.uint8)
    rows, cols = np.nonzero(ink)
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = DIGIT_BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(crop.clip(0, 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS))
    h, w = digit.shape
    mass = digit.astype(np.float64)
    total = mass.sum() or 1.0
    cy = (mass.sum(1) * np.arange(h)).sum() / total
    cx = (mass.sum(0) * np.arange(w)).sum() / total
    top = int(np.clip(round(IMAGE_SIDE / 2 - cy), 0, IMAGE_SIDE - h))
    left = int(np.clip(round(IMAGE_SIDE / 2 - cx), 0, IMAGE_SIDE - w))
    out[top : top + h, left : left + w] = digit
    return out.astype(np.uint8)


def is_blank(digit: np.ndarray) -> bool:
    """A preprocessed 28x28 with no lit pixel: nothing to classify."""
    return not digit.any()


def read_image(path: Path, *, background: Background = "auto") -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with warnings.catch_warnings():
            # Past Pillow's pixel limit it only warns, then decodes gigabytes: refuse it there.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    # Transparent drawings: put them on white paper before going gray.
                    rgba = img.convert("RGBA")
                    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    gray = np.asarray(Image.alpha_composite(paper, rgba).convert("L"))
                else:
                    gray = np.asarray(img.convert("L"))
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # memory, not a digit
        raise ImageError(f"too large to decode safely ({one_line(exc)})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot decode image ({one_line(exc)})") from None
    return to_mnist(gray, background=background)


@dataclass(frozen=True)
class Prediction:
    path: str
    label: int | None  # None when the file could not be read, or is blank
    top: tuple[tuple[int, float], ...]  # (digit, probability), most likely first
    error: str | None = None  # why the file could not be read
    blank: bool = False  # read, but no digit in it: not classified

    @property
    def classified(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict[str, object]:
        if self.error is not None:
            return {"file": self.path, "error": self.error}
        if self.blank:
            return {"file": self.path, "label": None, "note": BLANK}
        return {"file": self.path, "label": self.label, "top": [{"digit": d, "p": p} for d, p in self.top]}


@torch.no_grad()
def classify(model: nn.Module, images: np.ndarray, *, top: int = 3) -> list[tuple[tuple[int, float], ...]]:
    """uint8 (n, 28, 28) -> the ``top`` most likely digits with probabilities, per image."""
    model.eval()
    probs = model(normalize(torch.from_numpy(images))).softmax(1)
    values, digits = probs.topk(top, dim=1)
    return [
        tuple((int(d), float(p)) for d, p in zip(ds, vs, strict=True))
        for ds, vs in zip(digits.tolist(), values.tolist(), strict=True)
    ]


def predict_files(
    model: nn.Module, paths: list[Path], *, background: Background = "auto", top: int = 3
) -> list[Prediction]:
    """One Prediction per path, in order: unreadable files carry an error, blank ones say
    so, the rest are classified."""
    read: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    blank: set[int] = set()
    for i, path in enumerate(paths):
        try:
            digit = read_image(path, background=background)
        except ImageError as exc:
            errors[i] = str(exc)
            continue
        if is_blank(digit):
            blank.add(i)
        else:
            read[i] = digit
    tops = classify(model, np.stack(list(read.values())), top=top) if read else []
    by_index = dict(zip(read, tops, strict=True))

    def one(i: int, path: Path) -> Prediction:
        if i in errors:
            return Prediction(str(path), None, (), error=errors[i])
        if i in blank:
            return Prediction(str(path), None, (), blank=True)
        return Prediction(str(path), by_index[i][0][0], by_index[i])

    return [one(i, path) for i, path in enumerate(paths)]
