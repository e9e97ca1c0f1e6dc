"""K trainings in flight in one process: each trains a chunk per round, side by side.

Each of the K places is a ``Lane``: one thread and, on CUDA, one stream bound to it, both
belonging to the device for the process's life: lane i of a device is the same thread and
stream in every run (a search, then the seeds of its retraining, bench's and doctor's
repeated rounds). Everything a
training in that place does runs on that thread and stream, in order: building it,
warming up its step and undoing the warm-up, capturing the graph, every epoch. That is
a matter of correctness, not tidiness. torch hands out streams from a pool (32 per
priority, round-robin) and cuBLAS keeps one workspace per (thread's handle, stream)
whose address a captured graph keeps: trainings that each took a fresh stream would, past
the pool's size, share one with another live graph and race in its workspace, and every
(thread, stream) pair that ever ran a GEMM would hold a workspace of its own, never freed
(torch 2.11: ~32 MiB each). With K lanes there are K workspaces, never shared, however
many runs the process makes. A training's graph is released before its
lane builds the next one, and the memory of released graphs is given back to the device
between rounds, when no lane is capturing.

Lanes are threads on a CPU too, two or more of them: whatever threads can break (a
training that draws from process-wide state while another is built) shows on every
machine, CI's included. So trainings built here must own all they use (see
``trainer.Training``). A lone lane on a CPU (every CPU command but the tests and bench rows
that ask for more) runs in the calling thread: torch's OpenMP kernels called from another
thread ran small networks' steps up to 3.7x slower there (docs/benchmarks.md).

A sticky device fault (an illegal address) poisons the process's CUDA context: every
later training would fail at once. The first one ends the run: the trainings in flight
are abandoned with the fault as their reason and ``DeviceFault`` is raised.

New trainings are built in two phases, each on its own lane (``Build``). First their host
phases, all at once: what needs no device (initial weights drawn on the CPU from the
training's own generator, the schedule's rate table; up to seconds for ~100M parameters).
Then, one lane at a time while no lane trains, the exclusive build holds only device work:
the weights moved to the device, the step made, warm-up, capture, since a capture must
never overlap another lane's replay. A training built in one phase (a plain callable) does
all of it in the exclusive build. A finished training is measured (``on_done``: the
search's latency, on its own stream) on its lane, right after its last chunk.

The schedule is deterministic whatever the timing: in every round each training in
flight runs one chunk of steps (``Training.run_chunk``: an epoch, or the next of the
epoch's ``reports_per_epoch`` chunks); then, in lane order, each is judged (``judge``:
report, prune, complete) and finished lanes are refilled (``start``) in lane order. So with the same
seed the same trainings start, stop and are judged in the same order, and each trains
exactly what it would train alone.

Nothing here knows Optuna: ``search.trial_runner`` passes in what starts a trial and what judges it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

import torch

from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError, UsageError, one_line
from mnist_bench.interrupt import StopFlag
from mnist_bench.training.device import DeviceFault, device_fault, fault_message, give_back_memory, select_device
from mnist_bench.training.start import HostStart, host_start
from mnist_bench.training.trainer import Training

T = TypeVar("T")  # what the caller keeps with each training (for search: its Optuna trial)
R = TypeVar("R")
MAX_AUTO = 16  # --parallel auto never goes past this
# torch's stream pool holds 32 streams per priority: a 33rd lane would share a stream.
MAX_LANES = 32


@dataclass(frozen=True)
class Build:
    """How to build a training in two phases, both on its lane's thread.

    ``host()`` does what needs no device (for ``Training``: ``start.host_start``, the
    initial weights drawn on the CPU and the schedule's rate table); the new trainings of a
    round run theirs side by side, before any exclusive build. ``device(host, stream)``
    builds the training from what ``host`` returned, in the exclusive build: what needs the
    device (the weights moved there, warm-up, capture), on the lane's stream.
    """

    host: Callable[[], HostStart]
    device: Callable[[HostStart, torch.cuda.Stream | None], Training]


def training_build(
    config: TrainConfig,
    data: DeviceData,
    *,
    runtime: Runtime | None = None,
    stop: StopFlag | None = None,
    score_epochs: bool = True,
    reports_per_epoch: int = 1,
) -> Build:
    """How a lane builds ``config``'s training, as every production path does (a search's
    trials, a retrain's seeds) and the self-check too: the host start (weights drawn on the
    CPU, the rate table) outside the exclusive build, then the rest from it on the lane's stream."""

    def on_device(host: HostStart, stream: torch.cuda.Stream | None) -> Training:
        return Training(
            config, data, score_epochs=score_epochs, stop=stop, runtime=runtime, stream=stream, host=host,
            reports_per_epoch=reports_per_epoch,
        )  # fmt: skip

    return Build(partial(host_start, config, data), on_device)


# How to build a training: in two phases (``Build``), or in one, all of it in the exclusive
# build, on the stream of the lane it was given to (None on a CPU).
MakeTraining = Callable[[torch.cuda.Stream | None], Training] | Build
# Called on the lane's thread right after the chunk that finished a training (see run_in_flight).
OnDone = Callable[[Training], None]


@dataclass
class Slot(Generic[T]):
    tag: T
    make: MakeTraining | None = None  # how to build its training, until its lane has done so
    host: HostStart | None = None  # a Build's host phase, until the device phase takes it
    training: Training | None = None
    # What its last chunk (or its building) raised, as one line. Never the exception itself:
    # its traceback holds the frames, and so the model and the graph, alive until a full
    # garbage collection, and one out-of-memory failure would make the next ones likelier.
    error: str | None = None
    val_acc: float | None = None  # validation accuracy after its last chunk (an epoch, or part of one)
    fault: str | None = None  # a sticky device fault its last chunk raised: the run ends


class Lane:
    """One place for a training: one thread and (on CUDA) one stream, for the process's life.
    ``inline``: the calling thread instead of a thread of its own (a lone lane on a CPU)."""

    def __init__(self, index: int, device: torch.device, *, inline: bool = False) -> None:
        self.index, self.device = index, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        # The thread selects the device first: CUDA's current device is per thread.
        self._thread = (
            None if inline else ThreadPoolExecutor(1, f"lane-{index}", initializer=select_device, initargs=(device,))
        )

    def submit(self, fn: Callable[[], R]) -> Future[R]:
        """Run ``fn`` on this lane's thread (inline: now, and return it done)."""
        if self._thread is not None:
            return self._thread.submit(fn)
        future: Future[R] = Future()
        try:
            future.set_result(fn())
        except BaseException as exc:  # as a thread's future holds it, KeyboardInterrupt included
            future.set_exception(exc)
        return future

    def run(self, fn: Callable[[], R]) -> R:
        return self.submit(fn).result()


# The process's lanes, by (device, index): made on first use, kept until the process ends
# (an idle lane's thread waits on its queue; interpreter exit joins it).
_LANES: dict[tuple[str, int], Lane] = {}
_LANES_LOCK = threading.Lock()


def device_lanes(k: int, device: torch.device) -> list[Lane]:
    """The first ``k`` of ``device``'s lanes, made where missing: the same threads and
    streams for every caller, so cuBLAS keeps one workspace per lane, not per run."""
    with _LANES_LOCK:
        for i in range(k):
            key = (str(device), i)
            if key not in _LANES:
                _LANES[key] = Lane(i, device)
        return [_LANES[(str(device), i)] for i in range(k)]


def check_parallel(runtime: Runtime, k: int) -> None:
    """Refuse what cannot run with ``k`` trainings in flight, before any starts."""
    if runtime.compile and k > 1:
        # torch.compile's CUDA graphs capture through torch.cuda.graph, whose entry
        # synchronizes the device and empties its cache: during another lane's capture
        # that frees memory the capture records into, and torch's allocator asserts.
        raise UsageError(f"--compile trains one trial at a time: use --parallel 1, not {k}")


def lanes_for(k: int, device: torch.device) -> list[Lane]:
    """``k`` lanes on ``device``, each with a thread and (on CUDA) a stream no other lane has,
    the device's own for the process's life (``device_lanes``): nothing to close. One lane on
    a CPU runs in the calling thread."""
    if not 1 <= k <= MAX_LANES:
        raise UsageError(f"--parallel {k}: between 1 and {MAX_LANES} trainings in flight per device")
    lanes = [Lane(0, device, inline=True)] if k == 1 and device.type == "cpu" else device_lanes(k, device)
    pointers = [lane.stream.cuda_stream for lane in lanes if lane.stream is not None]
    if len(set(pointers)) != len(pointers):  # the pool is round-robin: only another's streams interleaving
        raise MnistBenchError(f"{k} lanes on {device} did not get {k} distinct CUDA streams")
    return lanes


def parse_parallel(value: str, device: torch.device, *, largest_trial_bytes: int | None = None) -> int:
    """``--parallel``: a count, or auto (1 on a CPU; on a GPU, bounded by free memory and MAX_AUTO)."""
    if value != "auto":
        try:
            k = int(value)
        except ValueError:
            raise UsageError(f"--parallel {value!r}: a number of trials, or auto") from None
        if not 1 <= k <= MAX_LANES:
            raise UsageError(f"--parallel {value!r}: {k} trials in flight; must be between 1 and {MAX_LANES}")
        return k
    if device.type != "cuda":
        return 1  # one thread already keeps the CPU's cores busy: more only contend
    free, _ = torch.cuda.mem_get_info(device)
    by_memory = MAX_AUTO if not largest_trial_bytes else max(1, math.floor(0.8 * free / largest_trial_bytes))
    return min(MAX_AUTO, by_memory)


def _prepare(slot: Slot[T]) -> None:
    """The host phase of the slot's ``Build``, on its lane's thread: no device work."""
    if not isinstance(slot.make, Build):
        return  # built in one phase
    try:
        slot.host = slot.make.host()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # this training fails alone (judged as failed), and is not built
        slot.make = None
        slot.error = one_line(exc)


def _build(slot: Slot[T], lane: Lane) -> None:
    """Build the slot's training on the lane's thread and stream: warm-up and capture included."""
    if slot.make is None:
        return  # its host phase failed: slot.error says why
    make, slot.make = slot.make, None
    host, slot.host = slot.host, None  # the training owns it now, the slot keeps none of it
    try:
        if isinstance(make, Build):
            assert host is not None, "a Build's host phase runs before its device phase"
            slot.training = make.device(host, lane.stream)
        else:
            slot.training = make(lane.stream)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # this training fails alone (judged as failed); unless the device is gone
        slot.error = one_line(exc)
        slot.fault = device_fault(exc, lane.device)


def _chunk(slot: Slot[T], lane: Lane, on_done: OnDone | None) -> None:
    """Train the slot's training one chunk, on the lane's thread; ``on_done`` it if that finished it."""
    if slot.training is None:
        return  # its building failed: slot.error says why
    try:
        if not slot.training.done:  # done already: a finished training resumed from its saved state
            slot.val_acc = slot.training.run_chunk()
            if slot.training.done and on_done is not None:
                on_done(slot.training)
        slot.error = None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # this training fails alone, the others go on; unless the device is gone
        slot.error = one_line(exc)
        slot.fault = device_fault(exc, lane.device)


def _wait(futures: list[Future[None]]) -> None:
    """Wait for every one of ``futures``, then raise what the first that raised raised."""
    raised = [f.exception() for f in futures]
    for exc in raised:
        if exc is not None:
            raise exc


def run_in_flight(
    k: int,
    start: Callable[[int], tuple[T, MakeTraining] | None],
    judge: Callable[[Slot[T]], bool],
    abandon: Callable[[Slot[T], str], None],
    *,
    device: torch.device,
    on_done: OnDone | None = None,
) -> int:
    """Keep up to ``k`` trainings in flight until ``start`` has no more; returns how many ran.

    ``start(lane_index)`` names the next training, its tag and how to build it (or None:
    no more); its lane builds it: a ``Build``'s host phase side by side with the other new
    trainings' host phases, then the device part one at a time while no lane trains.
    ``on_done(training)`` runs on the lane's thread, after the chunk that finished a
    training (not after one that raised), while other lanes may still train: what a
    finished training needs measured on its own stream (search: its latency). ``judge(slot)`` is
    called after each of its chunks, in lane order, and says whether it is finished
    (completed, pruned, failed); a finished training's graph is released then, and its
    memory given back before the next round.
    ``abandon(slot, reason)`` is called on every training in flight when the run ends
    early: a KeyboardInterrupt (Ctrl-C, raised inside a chunk by the trainer's stop flag),
    after the round's other chunks, propagates; a sticky device fault raises ``DeviceFault``.
    """
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
                    slots[i] = Slot(made[0], make=made[1])
                    ran += 1

    def abandon_all(reason: str) -> None:
        for left in slots:
            if left is not None:
                abandon(left, reason)

    lanes = lanes_for(k, device)
    try:
        refill()
        while any(slots):
            new = [(i, slot) for i, slot in enumerate(slots) if slot is not None and slot.make is not None]
            # What needs no device (initial weights drawn on the CPU, rate tables) first,
            # each on its own lane and all at once: it holds no build up.
            _wait([lanes[i].submit(partial(_prepare, slot)) for i, slot in new])
            # Then the device part, one at a time, while no lane trains: a capture never
            # overlaps another lane's replay (before torch 2.12 the default generator had
            # one process-wide capture state, and a replay during a capture raised).
            for i, slot in new:
                lanes[i].run(partial(_build, slot, lanes[i]))
            running = [(i, slot) for i, slot in enumerate(slots) if slot is not None]
            _wait([lanes[i].submit(partial(_chunk, slot, lanes[i], on_done)) for i, slot in running])
            fault = next((slot.fault for slot in slots if slot is not None and slot.fault), None)
            if fault is not None:
                in_flight = sum(slot is not None for slot in slots)
                abandon_all(f"device fault: {fault}")
                raise DeviceFault(fault_message(device, fault, in_flight))
            released = False
            for i, maybe in enumerate(slots):
                if maybe is not None and judge(maybe):
                    if maybe.training is not None:
                        maybe.training.release()  # before this lane builds its next training
                        released = True
                    slots[i] = None
            if released:
                give_back_memory(device)  # between rounds: no lane is capturing now
            refill()
    except KeyboardInterrupt:
        abandon_all("interrupted (SIGINT) during training")
        raise
    return ran
