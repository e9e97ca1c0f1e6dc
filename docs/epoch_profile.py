"""Usage: MNIST_BENCH_DATA=../shared/data python docs/epoch_profile.py

Where one training epoch of the frontier-cpu winner (784-826-748-652-10, SGD, batch 256,
dropout 0.0056, the deformations it chose) goes on this machine: three epochs timed
(wall clock, no evaluation), then one profiled epoch, its self CPU time grouped by what
the ops do. The floor beside it is the epoch's matmul work (6 flops per weight per
image: forward, and two products backward) at the fp32 rate that ``doctor`` measures.
The profiler's own overhead makes the profiled epoch longer than the timed ones."""

import os
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from mnist_bench.augment import parse_deform
from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData, default_data_dir, ensure_split
from mnist_bench.doctor import precision_rates
from mnist_bench.model import ModelConfig
from mnist_bench.train import Training

DEFORM = parse_deform(
    "rotate_deg=11.12,scale=0.1117,shear_deg=14.16,shift_px=2.364,elastic_alpha_px=3.438,elastic_sigma_px=5"
)
MODEL = ModelConfig(hidden=(826, 748, 652), dropout=0.005637)
CONFIG = TrainConfig(
    MODEL, "sgd", 0.095177, 0.9, batch_size=256, epochs=240, seed=0, schedule="cosine",
    label_smoothing=0.06176, augment="elastic", deform=DEFORM,
)  # fmt: skip
GROUPS = {  # aten op -> what it does here
    "aten::mm": "matmul", "aten::addmm": "matmul", "aten::bmm": "deformations",
    "aten::grid_sampler_2d": "deformations",
}  # fmt: skip


def group(key: str, shapes: list) -> str:
    if key == "aten::uniform_":  # one serial generator: a batch's dropout masks are [256, width]
        mask = len(shapes[0]) == 2 and shapes[0][1] in MODEL.hidden
        return "random draws: dropout masks" if mask else "random draws: deformations"
    return GROUPS.get(key, "other aten ops (elementwise, copies, optimizer)")


data_dir = Path(os.environ.get("MNIST_BENCH_DATA") or default_data_dir())
data = DeviceData.from_splits(ensure_split(data_dir, "train"), ensure_split(data_dir, "test"), torch.device("cpu"))
run = Training(CONFIG, data, score_epochs=False)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {MODEL.layers}, {MODEL.n_params:,} weights")
for _ in range(3):
    start = time.perf_counter()
    run.run_epoch()
    print(f"epoch {run.epoch}: {time.perf_counter() - start:.2f} s")

rate = precision_rates(torch.device("cpu"))["fp32"]  # doctor's row: batch 256 through a 2048-wide layer
flops = 6 * MODEL.n_params * len(data.x_train)
print(f"matmul floor: {flops / 1e9:.0f} GFLOP an epoch at {rate / 1e9:.0f} GFLOP/s = {flops / rate:.2f} s")

with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    run.run_epoch()
seconds: dict[str, float] = defaultdict(float)
for event in prof.key_averages(group_by_input_shape=True):
    if event.key.startswith("aten::"):
        seconds[group(event.key, event.input_shapes)] += event.self_cpu_time_total / 1e6
total = sum(seconds.values())
for name, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
    print(f"{name:50s} {s:5.2f} s  {100 * s / total:3.0f}%")
print(f"{'profiled epoch, aten ops':50s} {total:5.2f} s")
