"""How many trials fit on one device at once: one trial's worst-case memory, and the
worker count ``--workers auto`` picks from it.

``auto_workers`` picks K for ``--workers auto`` from the device's free memory, the
largest trial the space can sample, and the CPU cores that feed the workers; the
measurements behind trials in worker processes rather than stacked into one model are
``measure.packing``'s (``mnist-bench bench --section packing``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mnist_bench.data import N_CLASSES
from mnist_bench.model import INPUT_SIZE, ModelConfig
from mnist_bench.search.space import SearchSpace

MAX_AUTO_WORKERS = 8  # the most concurrent trials `bench` measures; SQLite contention grows beyond
CUDA_CONTEXT_BYTES = 600 * 2**20  # what each process's CUDA context and kernels take on the GPU
MEMORY_HEADROOM = 0.8  # share of the free memory the workers may plan to use


def trial_bytes(space: SearchSpace, n_train: int, n_eval: int) -> int:
    """Device memory one worker needs, at most, for a trial the space can sample.

    The data (float32 images and int64 labels), the widest and deepest model with its
    gradients and two optimizer moments, and the activations of the largest batch
    (kept for backward, plus the evaluation chunk), twice over for the allocator.
    """
    hidden = space.largest_hidden
    sizes = (INPUT_SIZE, *hidden, N_CLASSES)
    params = ModelConfig(hidden).n_params
    data = (n_train + n_eval) * (INPUT_SIZE * 4 + 8)
    activations = max(space.batch_sizes) * sum(sizes) * 4 * 3
    evaluation = 8192 * max(sizes) * 4 * 2
    return data + 2 * (params * 4 * 4 + activations + evaluation)


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    reason: str  # one line for the user: what bound the number


def auto_workers(
    device: torch.device,
    space: SearchSpace,
    *,
    n_train: int = 55_000,
    n_eval: int = 5_000,
    free_bytes: int | None = None,
    cpu_count: int | None = None,
) -> WorkerPlan:
    """How many trials to train at once on ``device``.

    Bounded by memory (free bytes over one trial's worst case), by CPU cores (each
    worker process needs one to launch its kernels or, on the CPU, to compute) and by
    ``MAX_AUTO_WORKERS``. ``free_bytes`` and ``cpu_count`` default to what the machine
    reports; tests pass their own. Where the system reports no free memory, the bound by
    memory is left out and the reason says so.
    """
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    per_trial = trial_bytes(space, n_train, n_eval)
    if device.type == "cuda":
        per_trial += CUDA_CONTEXT_BYTES
        if free_bytes is None:
            free_bytes, _ = torch.cuda.mem_get_info(device)
    elif free_bytes is None:
        free_bytes = _available_ram()
    bounds: dict[str, int] = {}
    if free_bytes is not None:
        by_memory = int(free_bytes * MEMORY_HEADROOM // per_trial)
        bounds[f"{free_bytes / 2**30:.1f} GiB free / {per_trial / 2**20:.0f} MiB per trial"] = by_memory
    bounds |= {f"{cores} CPU core(s)": cores, f"at most {MAX_AUTO_WORKERS}": MAX_AUTO_WORKERS}
    why, workers = min(bounds.items(), key=lambda item: item[1])
    unmeasured = "" if free_bytes is not None else " (free memory not measured on this system)"
    return WorkerPlan(max(1, workers), f"{max(1, workers)} worker(s) on {device}, bound by {why}{unmeasured}")


MEMINFO = "/proc/meminfo"  # Linux's: MemAvailable counts the page cache a new process can take back


def _available_ram() -> int | None:
    """Bytes of RAM new worker processes may use: Linux's MemAvailable, else the physical
    memory where sysconf names it (macOS, the BSDs), else None (Windows has no os.sysconf)."""
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        page, pages = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no os.sysconf, or a name unknown here
        return None
    return page * pages if page > 0 and pages > 0 else None  # -1: the system cannot tell
