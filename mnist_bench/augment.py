"""Training-time augmentation of a whole batch at once, on the batch's device.

``affine``: a random rotation, scale and shift per image. ``elastic``: that affine
plus a smooth random displacement field (Simard et al., 2003), the distortion that took
a plain MLP to 99.3% on MNIST. Both resample with ``grid_sample``: one kernel for the
batch, no per-image Python, no trip to the CPU. Labels are untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import cast

import torch
import torch.nn.functional as F

from mnist_bench.data import IMAGE_SIDE, MNIST_MEAN, MNIST_STD
from mnist_bench.errors import registered


@dataclass(frozen=True)
class AugmentSpec:
    """One augmentation: everything that names one (config, space, CLI) derives from ``AUGMENTS``."""

    name: str  # what configs, space files, checkpoints and the CLI say
    description: str  # one line, for help and docs
    deforms: bool  # draws an affine deformation per image (rotation, scale, shear, shift)
    elastic: bool  # adds a smooth random displacement field on top


AUGMENTS: dict[str, AugmentSpec] = {
    spec.name: spec
    for spec in (
        AugmentSpec("none", "the images as they are", deforms=False, elastic=False),
        AugmentSpec("affine", "a random rotation, scale, shear and shift per image", deforms=True, elastic=False),
        AugmentSpec("elastic", "affine plus a smooth random displacement field", deforms=True, elastic=True),
    )
}


def augment_spec(name: str) -> AugmentSpec:
    """The registered augmentation ``name``; a ValueError naming the known ones otherwise."""
    return registered(AUGMENTS, "augment", name)


@dataclass(frozen=True)
class Deform:
    """How strong the deformations are; the defaults are those every study so far used.

    Each image of every batch of every epoch draws its own: rotation, scale, shear and
    shift uniformly within +-these bounds, and for ``elastic`` a smooth random
    displacement field (uniform noise blurred with a Gaussian of ``elastic_sigma_px``,
    scaled to at most ``elastic_alpha_px``). Ciresan et al. (2010) used rotation,
    scaling, shearing and elastic distortions together.
    """

    rotate_deg: float = 12.0  # rotation drawn uniformly in +-this
    scale: float = 0.1  # scale drawn uniformly in 1 +- this
    shear_deg: float = 0.0  # horizontal shear angle drawn uniformly in +-this (0: none, no draw)
    shift_px: float = 2.0  # shift drawn uniformly in +-this, each axis
    elastic_alpha_px: float = 4.0  # largest elastic displacement, in pixels
    elastic_sigma_px: float = 4.0  # smoothing of the displacement field (Gaussian sigma, pixels)

    def __post_init__(self) -> None:
        for name, value, high in (
            ("rotate_deg", self.rotate_deg, 90.0),
            ("scale", self.scale, 0.9),
            ("shear_deg", self.shear_deg, 60.0),
            ("shift_px", self.shift_px, IMAGE_SIDE / 2),
            ("elastic_alpha_px", self.elastic_alpha_px, IMAGE_SIDE / 2),
        ):
            if not (0 <= value <= high):  # also refuses NaN
                raise ValueError(f"{name}={value} must be between 0 and {high:g}")
        if not 0.5 <= self.elastic_sigma_px <= 9:  # the blur's reach (3 sigma) must stay inside the image
            raise ValueError(f"elastic_sigma_px={self.elastic_sigma_px} must be between 0.5 and 9")


DEFAULT_DEFORM = Deform()


def parse_deform(spec: str, base: Deform = DEFAULT_DEFORM) -> Deform:
    """'rotate_deg=15,shear_deg=10' -> ``base`` with those strengths (as in a space file)."""
    names = {f.name for f in fields(Deform)}
    changes: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in names:
            raise ValueError(f"{part!r}: expected name=value with a name among {', '.join(sorted(names))}")
        try:
            changes[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{part!r}: {value!r} is not a number") from None
    return replace(base, **changes)


# Normalized pixels: what an empty (black) pixel becomes after standardization.
_BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def blur_matrix(sigma: float, side: int, device: torch.device) -> torch.Tensor:
    """(side, side) matrix M with ``M @ v`` = v reflect-padded, Gaussian-blurred, cropped back.

    The same blur as ``conv1d(pad(v, radius, mode="reflect"), kernel)``, folded into one
    small matrix: blurring a (B, 2, 28, 28) field along both axes becomes two batched
    products of 28 x 28, where a depthwise convolution on a CPU took most of an elastic
    epoch's augmentation time (docs/benchmarks.md). Built once per training (``Augmenter``),
    not per batch.
    """
    # Built on the CPU, whose scatter_add sums in order: CUDA's atomic adds would sum a
    # cell's three terms (wide blurs reflect twice) in any order, and not repeat bitwise.
    kernel = _gaussian_kernel(sigma, torch.device("cpu"))
    radius = kernel.numel() // 2
    if radius >= side:
        raise ValueError(f"a blur of sigma {sigma} reaches past a {side}-pixel image")
    out = torch.arange(side)[:, None]
    source = out + torch.arange(-radius, radius + 1)[None, :]
    source = torch.where(source < 0, -source, source)  # reflect, edge not repeated (as F.pad)
    source = torch.where(source > side - 1, 2 * (side - 1) - source, source)
    matrix = torch.zeros(side, side).scatter_add_(1, source, kernel.expand(side, -1).contiguous())
    return matrix.to(device)


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform in +-``bound``, drawn straight into place (one pass, not a draw, a scale and a shift)."""
    return torch.empty(shape, device=device).uniform_(-bound, bound, generator=generator)


class Augmenter:
    """A training's augmentation: ``kind`` at ``deform``'s strengths, with the device tensors
    it reads (the elastic blur matrix, the centres and constants) built once, here, on the
    current stream.

    Invariant: the training that holds this owns those tensors for its whole life. A
    captured CUDA graph reads them by address on every replay, so they are never handed out
    by a module-level cache, where another training's key could evict and free them.
    """

    def __init__(self, kind: str, deform: Deform, device: torch.device) -> None:
        self.spec = augment_spec(kind)
        self.kind, self.deform = kind, deform
        self.blur = blur_matrix(deform.elastic_sigma_px, IMAGE_SIDE, device) if self.spec.elastic else None
        self.half = torch.tensor(0.5, device=device)  # centres the elastic noise (``_elastic_field``)
        # The pixel centres in grid units (-1 to 1 across the image), as affine_grid places them.
        centres = (torch.arange(IMAGE_SIDE, dtype=torch.float32, device=device) * 2 + 1) / IMAGE_SIDE - 1
        self.xs, self.ys = centres.view(1, 1, 1, IMAGE_SIDE), centres.view(1, 1, IMAGE_SIDE, 1)

    @property
    def draws(self) -> bool:
        """Whether it draws random numbers (from the training's generator)."""
        return self.spec.deforms

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Flat normalized images (B, 784) -> augmented images of the same shape, dtype, device."""
        if not self.spec.deforms:
            return x
        deform, b, device = self.deform, x.shape[0], x.device
        images = x.view(b, 1, IMAGE_SIDE, IMAGE_SIDE) - _BACKGROUND  # background 0: grid_sample pads with 0

        angle = _uniform((b,), math.radians(deform.rotate_deg), generator, device)
        scale = 1 + _uniform((b,), deform.scale, generator, device)
        shift = _uniform((b, 2), deform.shift_px * 2 / IMAGE_SIDE, generator, device)  # grid units: 2 per width
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        row_x, row_y = torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)
        if deform.shear_deg:  # drawn only when asked for: the default draws stay those of earlier studies
            shear = torch.tan(_uniform((b,), math.radians(deform.shear_deg), generator, device))
            row_x = row_x + shear[:, None] * row_y  # x' = x + shear * y, after rotation and scale
        grid = self._affine_grid(torch.stack([row_x, row_y], 1))  # (B, 2, H, W): x and y planes

        if self.blur is not None:
            field = self._elastic_field(b, generator, device)
            # Each image's largest displacement is alpha: the field scaled and added in one pass.
            largest = field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
            grid.addcmul_(field, (deform.elastic_alpha_px * 2 / IMAGE_SIDE) / largest)

        warped = F.grid_sample(
            images, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return (warped + _BACKGROUND).view(b, -1).to(x.dtype)

    def _elastic_field(self, b: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """(B, 2, H, W) displacements: uniform noise, Gaussian-blurred along both axes, in any units
        (the caller scales each image's largest to alpha).

        The noise is 8 random bits a pixel, eight to a 64-bit draw: a quarter of the time of a
        float per pixel, which was most of an elastic batch's draws on a CPU; a level in 256
        is far finer than the blur smooths away. The bits read as -128..127, centred by the
        row blur's added 0.5 (its rows sum to 1). Row blur as one matrix product over all
        rows, column blur as a batched one: a broadcast ``blur @ field`` took four times as long.
        """
        blur, n = cast(torch.Tensor, self.blur), b * 2 * IMAGE_SIDE * IMAGE_SIDE
        words = torch.empty((n + 7) // 8, dtype=torch.int64, device=device)
        words.random_(-(2**63), None, generator=generator)  # all 64 bits
        noise = words.view(torch.int8)[:n].view(-1, IMAGE_SIDE).float()
        rows = torch.addmm(self.half, noise, blur.T).view(b * 2, IMAGE_SIDE, IMAGE_SIDE)
        return torch.bmm(blur.expand(b * 2, -1, -1), rows).view(b, 2, IMAGE_SIDE, IMAGE_SIDE)

    def _affine_grid(self, theta: torch.Tensor) -> torch.Tensor:
        """``F.affine_grid(theta, ...)`` (align_corners=False) as (B, 2, H, W) planes, made by
        broadcasting: one pass over the grid, where affine_grid's batched product of K = 3
        took a third of a batch's augmentation on a CPU."""
        column = theta[..., 0, None, None] * self.xs + theta[..., 2, None, None]  # (B, 2, 1, W)
        return column + theta[..., 1, None, None] * self.ys  # + (B, 2, H, 1) -> (B, 2, H, W)


def augment_batch(
    x: torch.Tensor, kind: str, generator: torch.Generator, deform: Deform = DEFAULT_DEFORM
) -> torch.Tensor:
    """One batch augmented once (figures, probes); training keeps an ``Augmenter`` instead."""
    return Augmenter(kind, deform, x.device)(x, generator)


def deformed_examples(images: torch.Tensor, kind: str, deform: Deform, *, variants: int, seed: int = 0) -> torch.Tensor:
    """uint8 digits (n, 28, 28) -> ``variants`` deformed draws of each, uint8 (variants, n, 28, 28).

    The same function training uses, on the same normalized pixels, turned back into
    grey levels: what the network sees, for checking strengths by eye.
    """
    generator = torch.Generator().manual_seed(seed)
    flat = (images.reshape(images.shape[0], -1).float() / 255 - MNIST_MEAN) / MNIST_STD
    draws = [augment_batch(flat, kind, generator, deform) for _ in range(variants)]
    pixels = (torch.stack(draws) * MNIST_STD + MNIST_MEAN) * 255
    return pixels.round().clamp(0, 255).to(torch.uint8).view(variants, *images.shape)
