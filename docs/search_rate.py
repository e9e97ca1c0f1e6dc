"""Usage: MNIST_BENCH_DATA=../shared/data python docs/search_rate.py [--folder DIR] [SEARCH OPTIONS]

How close a search's trials train to this machine's matmul floor. Runs
``mnist-bench search SEARCH OPTIONS`` (default: ``--trials 50 --seed 0``, the default
space, fp32) from a temporary folder, or from ``DIR`` (an empty folder, kept: its
``studies/`` then holds the study as the command leaves it), and around it measures
the floor rate as ``docs/epoch_profile.py`` does (doctor's fp32 matmul rate, the best
of five before the search and five after). Each trial's matmul work is 6 flops per weight per
training image it saw (``n_params`` x ``samples_per_s`` x ``train_time_s`` from the study;
pruned trials count for the epochs they trained); its time is its training time, the
validation passes left out. Prints every trial against its floor, and all of them
time-weighted: the search's training time over the time its work needs at the floor.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
from epoch_profile import floor_rates

from mnist_bench.search.loop import stored_space
from mnist_bench.search.space import sample_config


def main() -> None:
    options = sys.argv[1:]
    keep = None
    if options[:1] == ["--folder"]:
        keep, options = Path(options[1]), options[2:]
    options = options or ["--trials", "50", "--seed", "0"]
    before = floor_rates()["fp32"]
    with tempfile.TemporaryDirectory() as temporary:
        folder = keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        name = options[options.index("--study") + 1] if "--study" in options else "mnist-mlp"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mnist_bench", "search", *options], check=True, cwd=folder)
        wall = time.perf_counter() - start
        storage = f"sqlite:///{folder.resolve() / 'studies' / 'mnist-bench.db'}"  # search's default, in its folder
        study = optuna.load_study(study_name=name, storage=storage)
        trained = [t for t in study.get_trials(deepcopy=False) if "epochs_run" in t.user_attrs]
        space = stored_space(study)
    after = floor_rates()["fp32"]
    floor = max(before, after)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; search options: {' '.join(options)}")
    print(f"fp32 floor rate (best of 5 before / after the search): {before / 1e9:.0f} / {after / 1e9:.0f} GFLOP/s")
    print("| trial | network | optimizer, batch | epochs | state | training (s) | GFLOP/s | time / floor |")
    print("|---|---|---|---|---|---|---|---|")
    total_s = total_flop = 0.0
    for t in trained:
        a, seconds = t.user_attrs, t.user_attrs["train_time_s"]
        flop = 6 * a["n_params"] * a["samples_per_s"] * seconds
        total_s, total_flop = total_s + seconds, total_flop + flop
        config = sample_config(optuna.trial.FixedTrial(t.params), space, epochs=1, seed=0)
        rate, ratio = flop / seconds / 1e9, seconds / (flop / floor)
        row = [str(t.number), config.model.layers, f"{config.optimizer}, {config.batch_size}", str(a["epochs_run"]),
               t.state.name.lower(), f"{seconds:.1f}", f"{rate:.0f}", f"{ratio:.2f}"]  # fmt: skip
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(trained)} trials, {wall:.0f} s wall-clock; training {total_s:.0f} s for "
          f"{total_flop / 1e12:.1f} TFLOP of matmul work: {total_flop / total_s / 1e9:.0f} GFLOP/s, time-weighted "
          f"{total_s / (total_flop / floor):.2f}x the floor")  # fmt: skip


if __name__ == "__main__":
    main()
