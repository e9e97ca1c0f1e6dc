"""Several worker processes sharing one study through its storage.

Each worker is a process of its own (not a thread: training holds the GIL between
kernels), pinned to one device, with its own copy of the data on that device. The
workers coordinate only through the Optuna storage, exactly as workers on other
machines running the same command do; the parent process just starts them, relays
their finished trials to the caller and collects their errors.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from mnist_bench.data import MNIST_TRAIN_SIZE, DeviceData, ensure_split
from mnist_bench.errors import MnistBenchError, UsageError, one_line
from mnist_bench.interrupt import StopFlag
from mnist_bench.search.capacity import auto_workers
from mnist_bench.search.loop import run_trials
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.study import SearchSettings, TrialCounts
from mnist_bench.storage.heartbeats import StoppedWait
from mnist_bench.storage.trial_states import n_finished, state_counts
from mnist_bench.training.device import resolve_device, select_device


def device_names(spec: str) -> list[str]:
    """'auto' (every visible GPU, else the CPU) or 'cuda:0,cuda:1,...', each checked."""
    if spec.strip().lower() == "auto":
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise UsageError(f"--devices {spec!r}: name at least one device")
    return [str(resolve_device(name)) for name in names]


def plan_devices(spec: str, workers: int) -> list[str]:
    """One device per worker, round-robin over ``device_names(spec)``."""
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be at least 1")
    names = device_names(spec)
    return [names[i % len(names)] for i in range(workers)]


def plan_workers(workers: str, devices: str, space: SearchSpace, *, val_size: int) -> tuple[list[str], str | None]:
    """``--workers N`` or ``--workers auto`` over ``--devices``: one device per worker, and
    for auto the line that says what bounded the number (see ``packing.auto_workers``)."""
    if workers.strip().lower() != "auto":
        try:
            count = int(workers)
        except ValueError:
            raise UsageError(f"--workers {workers}: give a number or auto") from None
        return plan_devices(devices, count), None
    names = list(dict.fromkeys(device_names(devices)))
    cores = max(1, (os.cpu_count() or 1) // len(names))  # the devices share the CPU
    plans = [
        auto_workers(torch.device(name), space, n_train=MNIST_TRAIN_SIZE - val_size, n_eval=val_size, cpu_count=cores)
        for name in names
    ]
    planned = [name for name, plan in zip(names, plans, strict=True) for _ in range(plan.workers)]
    return planned, "auto: " + "; ".join(plan.reason for plan in plans)


@dataclass(frozen=True)
class WorkerJob:
    settings: SearchSettings
    space: SearchSpace
    data_dir: Path
    verify: bool
    devices: tuple[str, ...]  # device of worker i


def _worker(index: int, job: WorkerJob, messages: mp.Queue, stop: StopFlag) -> None:  # runs in the child
    # Ctrl-C reaches the whole process group; the parent alone decides, through ``stop``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    device = select_device(resolve_device(job.devices[index]))
    if device.type == "cpu":
        # Workers sharing the CPU split its cores instead of fighting over all of them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(job.devices)))
    try:
        split = ensure_split(job.data_dir, "train", verify=job.verify)
        data = DeviceData.with_validation(split, device, val_size=job.settings.val_size)
        counts = run_trials(
            replace(job.settings, worker=index),
            job.space,
            data,
            on_trial=lambda study, trial: messages.put(("trial", index, trial.number)),
            stop=stop,
            on_notice=lambda line: messages.put(("notice", index, line)),
            on_wait=lambda wait: messages.put(("wait", index, wait)),
        )
        messages.put(("done", index, counts.flat))  # why --stop-when-flat stopped it, if it did
    except KeyboardInterrupt:
        messages.put(("interrupted", index, ""))
    except Exception as exc:
        messages.put(("error", index, one_line(exc)))


def run_workers(
    job: WorkerJob,
    study: optuna.Study,
    *,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    stop: StopFlag | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_wait: Callable[[StoppedWait], None] | None = None,
) -> TrialCounts:
    """Start one process per entry of ``job.devices`` and wait for all of them.

    A worker's notices (a trial another worker finished first) go to ``on_notice``,
    prefixed with the worker. Every worker short of the target waits for the trials of
    stopped workers (``storage.heartbeats``); ``on_wait`` hears of each such trial once, not once a worker.

    Once ``stop`` is set (Ctrl-C) the workers are told; each stops its trial at the next
    batch, records it as failed with the reason and exits; then KeyboardInterrupt is
    raised here.
    """
    context = mp.get_context("spawn")  # CUDA cannot be used in forked children
    messages: mp.Queue = context.Queue()
    shared_stop = context.Event()
    processes = [
        context.Process(target=_worker, args=(i, job, messages, shared_stop), name=f"mnist-bench-worker-{i}")
        for i in range(len(job.devices))
    ]
    for process in processes:
        process.start()
    ran = 0
    errors: list[str] = []
    announced: set[int] = set()  # trials of stopped workers on_wait was told of
    running = len(processes)
    flat = None  # the first worker's --stop-when-flat verdict: they judge one study alike
    while running:
        if stop is not None and stop.is_set():
            shared_stop.set()
        try:
            kind, index, payload = messages.get(timeout=0.5)
        except queue.Empty:
            if not any(p.is_alive() for p in processes):
                break  # killed without a word (SIGKILL): its trial is left to the heartbeat
            continue
        if kind == "trial":
            ran += 1
            if on_trial is not None:
                trial = next(t for t in study.get_trials(deepcopy=False) if t.number == payload)
                on_trial(study, trial)
        elif kind == "notice":
            if on_notice is not None:
                on_notice(f"worker {index} ({job.devices[index]}): {payload}")
        elif kind == "wait":
            if on_wait is not None and set(payload.numbers) - announced:
                on_wait(payload)
            announced.update(payload.numbers)
        else:
            running -= 1
            if kind == "done" and flat is None:
                flat = payload
            if kind == "error":
                errors.append(f"worker {index} ({job.devices[index]}): {payload}")
    for process in processes:
        process.join()
    if shared_stop.is_set():
        raise KeyboardInterrupt("stop requested")
    if errors:
        more = f" (and {len(errors) - 1} other worker(s) failed)" if len(errors) > 1 else ""
        raise MnistBenchError(errors[0] + more)
    return TrialCounts(
        study=study,
        ran=ran,
        finished=n_finished(study),
        target=job.settings.trials,
        counts=state_counts(study),
        flat=flat,
    )
