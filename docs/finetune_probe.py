"""Usage: python docs/finetune_probe.py DATA_DIR CHECKPOINT...

Exploratory: does a short fine-tune on undeformed (or half-deformed) training images at a
small learning rate move test accuracy of models trained with deformations? Paired, per model."""

import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from mnist_bench.artifacts import checkpoint
from mnist_bench.augment import augment_batch
from mnist_bench.data import DeviceData, ensure_split
from mnist_bench.model import use_generator

DATA = Path(sys.argv[1])
torch.manual_seed(0)
data = DeviceData.from_splits(ensure_split(DATA, "train"), ensure_split(DATA, "test"), torch.device("cpu"))


def test_acc(model):
    model.eval()
    with torch.no_grad():
        return (model(data.x_eval).argmax(1) == data.y_eval).float().mean().item()


def finetune(ck, kind, epochs=2, lr=0.01, bs=256):
    model = checkpoint.load(ck).model
    cfg = checkpoint.load(ck).config
    g = torch.Generator().manual_seed(123)
    use_generator(model, g)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    n = data.x_train.shape[0]
    steps = epochs * math.ceil(n / bs)
    k = 0
    deform = cfg.deform if hasattr(cfg, "deform") else None
    half = (
        replace(
            deform,
            rotate_deg=deform.rotate_deg / 2,
            scale=deform.scale / 2,
            shear_deg=deform.shear_deg / 2,
            shift_px=deform.shift_px / 2,
            elastic_alpha_px=deform.elastic_alpha_px / 2,
        )
        if deform
        else None
    )
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb = data.x_train[idx]
            if kind == "half":
                xb = augment_batch(xb, "elastic", g, half)
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * k / steps))
            loss = F.cross_entropy(model(xb), data.y_train[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            k += 1
    return test_acc(model)


for name in sys.argv[2:]:
    ck = Path(name)
    before = test_acc(checkpoint.load(ck).model)
    t = time.perf_counter()
    clean = finetune(ck, "clean")
    half = finetune(ck, "half")
    print(
        f"{name}: before {before:.4f}  clean-2ep {clean:.4f} ({clean - before:+.4f})"
        f"  half-deform-2ep {half:.4f} ({half - before:+.4f})  [{time.perf_counter() - t:.0f} s]",
        flush=True,
    )
