"""Usage: python docs/augment_probe.py

How long the deformations of one 60,000-image epoch take on this machine, alone (no
network): ``augment_batch`` over random normalized images in batches of 128 and 256, the
hand recipe's strengths, then a profile of the elastic epoch at batch 256 (which aten
ops the time goes to). Random pixels cost the same as digits: the work is per pixel."""

import time

import torch
from torch.profiler import ProfilerActivity, profile

from mnist_bench.augment import augment_batch, parse_deform

HAND = parse_deform("rotate_deg=10,scale=0.1,shear_deg=10,shift_px=2,elastic_alpha_px=4,elastic_sigma_px=5")
N = 60_000

torch.manual_seed(0)
x = torch.randn(N, 784)
generator = torch.Generator().manual_seed(0)


def epoch(kind: str, batch: int) -> None:
    for i in range(0, N, batch):
        augment_batch(x[i : i + batch], kind, generator, HAND)


epoch("elastic", 256)  # warm-up
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
for batch in (128, 256):
    for kind in ("affine", "elastic"):
        start = time.perf_counter()
        epoch(kind, batch)
        print(f"batch {batch}, {kind}: {time.perf_counter() - start:.2f} s an epoch")
with profile(activities=[ProfilerActivity.CPU]) as prof:
    epoch("elastic", 256)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
