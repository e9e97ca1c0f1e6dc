"""Checkpoints: a torch state_dict plus a JSON file with everything needed to rebuild it.

A checkpoint is a folder::

    checkpoint.json   format, version, config, seed, data checksums, versions,
                      device, training time, test metrics, sha256 of the weights
    model.pt          the MLP's state_dict (torch.save; loaded with weights_only=True)

Version 1 is the only format so far; a reader refuses any other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_bench.config import TrainConfig
from mnist_bench.errors import MnistBenchError
from mnist_bench.model import build_mlp

FORMAT = "mnist-bench-checkpoint"
FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
WEIGHTS_FILE = "model.pt"


def save(folder: Path, model: nn.Module, config: TrainConfig, metadata: dict[str, Any]) -> Path:
    """Write the weights and the JSON beside them; returns the JSON's path."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights": WEIGHTS_FILE,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "layers": config.model.layers,
        "config": config.to_dict(),
        **metadata,
    }
    path = folder / META_FILE
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


@dataclass(frozen=True)
class Checkpoint:
    model: nn.Module  # on the CPU, in eval mode
    config: TrainConfig
    meta: dict[str, Any]
    path: Path  # the JSON file


WHAT_IT_IS = f"a checkpoint is a folder with {META_FILE} and {WEIGHTS_FILE}; give the folder or either file"


def meta_path_of(path: Path) -> Path:
    """The checkpoint.json behind any part of a checkpoint: its folder, its JSON or its weights file."""
    path = Path(path)
    if path.is_dir():
        candidate = path / META_FILE
    elif path.suffix == ".json":
        candidate = path
    else:
        # The weights file (whatever it was named): its JSON sits beside it.
        candidate = path.parent / META_FILE
    if not path.exists():
        raise MnistBenchError(f"no checkpoint at {path}: {WHAT_IT_IS}")
    if not candidate.is_file():
        raise MnistBenchError(f"{path} is not part of a checkpoint (no {META_FILE} there): {WHAT_IT_IS}")
    return candidate


def load(path: Path) -> Checkpoint:
    """Read a checkpoint from its folder, JSON or weights file; one-line errors for every way it can be bad."""
    meta_path = meta_path_of(path)
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MnistBenchError(f"{meta_path} is not valid JSON (truncated?): {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MnistBenchError(f"{meta_path} is not an mnist-bench checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise MnistBenchError(
            f"{meta_path} has checkpoint format version {meta.get('format_version')}; "
            f"this mnist-bench reads version {FORMAT_VERSION}"
        )
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MnistBenchError(f"{meta_path} has an invalid config: {exc}") from None
    weights = meta_path.parent / meta.get("weights", WEIGHTS_FILE)
    if not weights.is_file():
        raise MnistBenchError(f"weights file {weights} is missing")
    content = weights.read_bytes()
    if hashlib.sha256(content).hexdigest() != meta.get("weights_sha256"):
        raise MnistBenchError(f"{weights} does not match the sha256 in {meta_path.name} (truncated or replaced?)")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MnistBenchError(f"{weights} cannot be read as a torch state_dict: {exc}") from None
    model = build_mlp(config.model, generator=torch.Generator())  # its weights are replaced next
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()
        reason = " ".join(line.strip() for line in first[:3])
        raise MnistBenchError(f"weights in {weights} do not match the config {config.model.layers}: {reason}") from None
    model.eval()
    return Checkpoint(model=model, config=config, meta=meta, path=meta_path)
