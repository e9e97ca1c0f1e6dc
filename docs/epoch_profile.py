"""Usage: MNIST_BENCH_DATA=../shared/data python docs/epoch_profile.py [--precision fp32|bf16|both] [--profile]

How close training gets to this machine's matmul floor, for the frontier-cpu winner
(784-826-748-652-10, SGD, batch 256, dropout 0.0056, elastic deformations) and for
networks typical of the default search (1-3 hidden layers, SGD or Adam, batch 32-512).

For each network and precision: the median of three timed epochs (wall clock, no
evaluation; the small networks train on the first 12,000 images, whose steps cost what
any other 12,000's do), and its floor: the epoch's matmul work (6 flops per weight per
image: forward, and two products backward) at the matmul rate ``doctor`` measures, the
best of five measurements taken in this same run (the rate of a shared machine drifts;
the best is what the hardware allows). ``--profile`` adds one profiled epoch of each,
its time grouped by what the ops do; "Python and dispatch" is the wall time no aten op
accounts for. The profiler's own overhead makes a profiled epoch longer than a timed one.
"""

import argparse
import os
import statistics
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from mnist_bench.augment import parse_deform
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData, default_data_dir, ensure_split
from mnist_bench.measure.doctor import precision_rates
from mnist_bench.model import ModelConfig
from mnist_bench.training.trainer import Training

DEFORM = parse_deform(
    "rotate_deg=11.12,scale=0.1117,shear_deg=14.16,shift_px=2.364,elastic_alpha_px=3.438,elastic_sigma_px=5"
)
FRONTIER = TrainConfig(
    ModelConfig(hidden=(826, 748, 652), dropout=0.005637), "sgd", 0.095177, 0.9, batch_size=256, epochs=240,
    seed=0, schedule="cosine", label_smoothing=0.06176, augment="elastic", deform=DEFORM,
)  # fmt: skip
DEFAULT_SEARCH = [  # shapes and batches the default space draws (depth 1-4, widths 32-1024, batch 32-512)
    TrainConfig(ModelConfig(hidden=(128,)), "adam", 1e-3, batch_size=32, epochs=10),
    TrainConfig(ModelConfig(hidden=(380, 257, 210)), "sgd", 0.05, 0.9, batch_size=128, epochs=10),
    TrainConfig(ModelConfig(hidden=(512, 256)), "adam", 1e-3, batch_size=256, epochs=10),
    TrainConfig(ModelConfig(hidden=(1024, 1024)), "sgd", 0.05, 0.9, batch_size=512, epochs=10),
]
SMALL_SET = 12_000
GROUPS = {  # aten op -> what it does here
    "aten::mm": "matmul", "aten::addmm": "matmul", "aten::bmm": "deformations",
    "aten::grid_sampler_2d": "deformations", "aten::affine_grid_generator": "deformations",
    "aten::uniform_": "random draws", "aten::random_": "random draws",
    "aten::_fused_sgd_": "optimizer", "aten::_fused_adam_": "optimizer",
}  # fmt: skip


def floor_rates() -> dict[str, float]:
    """The best of five of doctor's matmul rates, per precision this machine trains in."""
    runs = [precision_rates(torch.device("cpu")) for _ in range(5)]
    return {precision: max(run[precision] for run in runs) for precision in runs[0]}


def timed_epochs(config: TrainConfig, data: DeviceData, precision: str) -> tuple[Training, list[float]]:
    run = Training(config, data, score_epochs=False, runtime=Runtime(precision=precision))
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        run.run_epoch()
        seconds.append(time.perf_counter() - start)
    return run, seconds


def where_time_goes(run: Training) -> dict[str, float]:
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run.run_epoch()
    wall = time.perf_counter() - start
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            name = GROUPS.get(event.key, "optimizer" if "foreach" in event.key else "other aten ops")
            seconds[name] += event.self_cpu_time_total / 1e6
    seconds["Python and dispatch"] = max(wall - sum(seconds.values()), 0.0)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="both", choices=["fp32", "bf16", "both"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only", choices=["frontier", "default"], default=None)
    args = parser.parse_args()
    data_dir = Path(os.environ.get("MNIST_BENCH_DATA") or default_data_dir())
    cpu = torch.device("cpu")
    full = DeviceData.from_splits(ensure_split(data_dir, "train"), ensure_split(data_dir, "test"), cpu)
    small = replace(full, x_train=full.x_train[:SMALL_SET], y_train=full.y_train[:SMALL_SET])
    rates = floor_rates()
    precisions = list(rates) if args.precision == "both" else [args.precision]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul floor rates (best of 5): "
          + ", ".join(f"{p} {rates[p] / 1e9:.0f} GFLOP/s" for p in rates))  # fmt: skip
    runs = [("frontier winner", FRONTIER, full)] * (args.only != "default")
    runs += [("default search", config, small) for config in DEFAULT_SEARCH] * (args.only != "frontier")
    print("| network | optimizer, batch | precision | epoch (s) | floor (s) | epoch / floor |")
    print("|---|---|---|---|---|---|")
    profiles = []
    for label, config, data in runs:
        for precision in precisions:
            run, seconds = timed_epochs(config, data, precision)
            epoch = statistics.median(seconds)
            floor = 6 * config.model.n_params * data.x_train.shape[0] / rates[precision]
            row = [f"{label}: {config.model.layers}", f"{config.optimizer}, {config.batch_size}", precision,
                   f"{epoch:.2f} ({len(data.x_train):,} images)", f"{floor:.2f}", f"{epoch / floor:.2f}"]  # fmt: skip
            print("| " + " | ".join(row) + " |", flush=True)
            if args.profile:
                profiles.append((f"{config.model.layers} {precision}", where_time_goes(run)))
    for name, seconds in profiles:
        total = sum(seconds.values())
        print(f"\n{name}, one profiled epoch: {total:.2f} s")
        for group, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {group:30s} {s:6.2f} s  {100 * s / total:3.0f}%")


if __name__ == "__main__":
    main()
