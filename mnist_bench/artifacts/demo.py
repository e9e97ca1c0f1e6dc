"""A checkpoint as one self-contained HTML page: draw a digit, see the model's answer.

The page (``demo_page.html``) carries the MLP's weights as base64 float32 and runs the
model in the browser: no server, no CDN, nothing fetched, so it opens offline from the
file. Its preprocessing is ``predict.to_mnist`` written again in JavaScript, step for
step (a Lanczos resize in Pillow's fixed point), so the page and ``mnist-bench predict``
see the same 28x28 digit in the same picture, to within a few grey levels.
"""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mnist_bench.artifacts.checkpoint import Checkpoint
from mnist_bench.artifacts.predict import MIN_CONTRAST
from mnist_bench.data import MNIST_MEAN, MNIST_STD
from mnist_bench.errors import MnistBenchError

DEMO_FILE = "demo.html"
_PLACEHOLDER = "/*MODEL*/"


def _floats(values: Any) -> str:
    return base64.b64encode(np.ascontiguousarray(values.detach().cpu().numpy(), dtype="<f4").tobytes()).decode()


def model_payload(ckpt: Checkpoint) -> dict[str, Any]:
    """What the page needs: every Linear layer's shape and weights, the input normalization and a caption."""
    linears = [m for m in ckpt.model.modules() if isinstance(m, nn.Linear)]
    test = ckpt.meta.get("test", {}).get("accuracy")
    about = f"{ckpt.config.model.layers} MLP"
    if test is not None:
        about += f", test accuracy {100 * test:.2f}% on the 10,000 MNIST test images"
    source = ckpt.meta.get("source", {})
    if "study" in source:
        about += f" (study {source['study']}, trial {source.get('trial')})"
    about += ". Runs in this page, offline."
    return {
        "about": about,
        "mean": MNIST_MEAN,
        "std": MNIST_STD,
        "min_contrast": MIN_CONTRAST,  # predict's rule for a blank picture, so both agree
        "layers": [
            {"in": m.in_features, "out": m.out_features, "weight": _floats(m.weight), "bias": _floats(m.bias)}
            for m in linears
        ],
    }


def demo_html(ckpt: Checkpoint) -> str:
    template = resources.files("mnist_bench.artifacts").joinpath("demo_page.html").read_text(encoding="utf-8")
    # "<" escaped so no caption can close the <script> that holds the JSON.
    payload = json.dumps(model_payload(ckpt)).replace("<", "\\u003c")
    return template.replace(_PLACEHOLDER, payload)


def write_demo(ckpt: Checkpoint, out: Path) -> Path:
    """Write the page to ``out`` (a file, or a folder to hold demo.html); returns its path."""
    path = out / DEMO_FILE if out.is_dir() else out
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(demo_html(ckpt), encoding="utf-8")
    except OSError as exc:
        raise MnistBenchError(f"cannot write the demo page to {path}: {exc.strerror or exc}") from None
    return path
