"""K trainings in flight in one process: each trains an epoch per round, side by side.

On a GPU each training has its own CUDA stream and is driven by its own thread, so
the small kernels of K models overlap instead of leaving the device idle between
launches. The schedule is deterministic whatever the timing: in every round each
training in flight runs one epoch; then, in slot order, each is judged (``judge``:
report, prune, complete) and finished slots are refilled (``start``) in slot order. So
with the same seed the same trainings start, stop and are judged in the same order, and
each trains exactly what it would train alone.

Nothing here knows Optuna: ``search`` passes in what starts a trial and what judges it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch

from mnist_bench.errors import MnistBenchError
from mnist_bench.train import Training

T = TypeVar("T")  # what the caller keeps with each training (for search: its Optuna trial)
MAX_AUTO = 16  # more trials in flight than this stopped paying on the H100 measured in issue 11


@dataclass
class Slot(Generic[T]):
    training: Training
    tag: T
    error: BaseException | None = field(default=None)  # what its last epoch raised (out of memory, say)
    last_acc: float | None = None  # evaluation accuracy of its last epoch


def parse_parallel(value: str, device: torch.device, *, largest_trial_bytes: int | None = None) -> int:
    """``--parallel``: a count, or auto (1 on a CPU; on a GPU, bounded by free memory and MAX_AUTO)."""
    if value != "auto":
        try:
            k = int(value)
        except ValueError:
            raise MnistBenchError(f"--parallel {value!r}: a number of trials, or auto") from None
        if k < 1:
            raise MnistBenchError(f"--parallel {value!r}: {k} trials in flight; must be at least 1")
        return k
    if device.type != "cuda":
        return 1  # one thread already keeps the CPU's cores busy: more only contend
    free, _ = torch.cuda.mem_get_info(device)
    by_memory = MAX_AUTO if not largest_trial_bytes else max(1, math.floor(0.8 * free / largest_trial_bytes))
    return min(MAX_AUTO, by_memory)


def _epoch(slot: Slot[T]) -> None:
    try:
        slot.last_acc = slot.training.run_epoch()
        slot.error = None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # this training fails alone; the others go on
        slot.error = exc


def run_in_flight(
    k: int,
    start: Callable[[int], tuple[Training, T] | None],
    judge: Callable[[Slot[T]], bool],
    abandon: Callable[[Slot[T]], None],
    *,
    threads: bool = False,
) -> int:
    """Keep up to ``k`` trainings in flight until ``start`` has no more; returns how many ran.

    ``start(slot_index)`` makes the next training (or None: no more). ``judge(slot)`` is
    called after each of its epochs, in slot order, and says whether it is finished
    (completed, pruned, failed). ``threads`` runs the epochs of a round on one thread
    each (CUDA, one stream per training); otherwise one after the other. A
    KeyboardInterrupt (Ctrl-C, raised inside an epoch by the trainer's stop flag) waits
    for the round's other epochs, calls ``abandon`` on every training in flight, and
    propagates.
    """
    if k < 1:
        raise MnistBenchError(f"--parallel {k}: must be at least 1")
    slots: list[Slot[T] | None] = [None] * k
    ran = 0
    exhausted = False

    def refill() -> None:
        nonlocal ran, exhausted
        for i in range(k):
            if slots[i] is None and not exhausted:
                made = start(i)
                if made is None:
                    exhausted = True
                else:
                    slots[i] = Slot(*made)
                    ran += 1

    with ThreadPoolExecutor(max_workers=k, thread_name_prefix="trial") as pool:
        try:
            refill()
            while any(slots):
                active = [s for s in slots if s is not None]
                if threads and len(active) > 1:
                    futures = [pool.submit(_epoch, slot) for slot in active]
                    raised = [f.exception() for f in futures]  # waits for every epoch of the round
                    for exc in raised:
                        if exc is not None:
                            raise exc
                else:
                    for slot in active:
                        _epoch(slot)
                for i, maybe in enumerate(slots):
                    if maybe is not None and judge(maybe):
                        slots[i] = None
                refill()
        except KeyboardInterrupt:
            for left in slots:
                if left is not None:
                    abandon(left)
            raise
    return ran
