"""How an epoch of training steps executes: eagerly, op by op, or as a replayed CUDA graph.

What a step computes is one function, ``step.TrainStep``, whichever runner executes it.
Small MLPs are launch-bound on a GPU: eagerly, each step is a hundred tiny kernels
launched from Python, and the GPU idles between them. The graphed runner captures one
whole step once per training and replays it: one launch per step.
The batch's indices, the learning rate of the step and the running loss live in device
buffers the graph reads and writes; the last partial batch runs the same step eagerly.
An epoch is ``begin`` and then ``run`` over its batches, in one stretch or in several
consecutive ones (a search that judges a trial several times an epoch), always whole
steps; a runner syncs with the host never, the caller once per stretch at most.

Before capture the step is warmed up (cuBLAS and autograd set themselves up) and what
the warm-up changed is put back, so training starts where the eager one would. Warm-up,
undo, capture and every replay run on the training's own stream, in that order: on one
stream the undo cannot overtake the warm-up, and the graph's cuBLAS workspace is that
of the one (thread, stream) pair the training owns (see ``lanes``).

``GraphedRunner(capture=False)`` runs the very same static step, warm-up and undo
included, without a graph: the CPU tests and ``doctor`` check it against the eager
runner (bitwise: the same step, the same update), and on CUDA the graph replays it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch

from mnist_bench.errors import one_line
from mnist_bench.optimizers import quiet_capturable_warning
from mnist_bench.training.device import capture_broken, mark_capture_broken
from mnist_bench.training.step import TrainStep

WARMUP_STEPS = 3  # before capture, on the training's stream (cuBLAS and autograd set themselves up)


class NotCapturable(Exception):
    """This training cannot be captured as a CUDA graph; the reason says why."""


class EagerRunner:
    """Steps launched op by op, one ``TrainStep`` call per batch: the CPU path, and the fallback on CUDA."""

    graphed = False
    fallen_back: str | None = None  # never graphed: nothing to fall back from

    def __init__(self, step: TrainStep) -> None:
        self.step = step

    def state(self) -> dict[str, Any]:
        return self.step.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.step.restore(state)

    def begin(self, perm: torch.Tensor) -> None:
        """An epoch over ``perm`` starts: its summed loss from zero."""
        self.step.loss_sum.zero_()

    def run(self, perm: torch.Tensor, first: int, last: int, stop: Callable[[], bool]) -> None:
        """Batches ``first`` to ``last`` (excluded) of the epoch over ``perm``, in order (no sync)."""
        bs = self.step.config.batch_size
        for i in range(first * bs, min(last * bs, perm.shape[0]), bs):
            if stop():  # a Python flag: no device sync
                raise KeyboardInterrupt("stop requested")
            self.step(perm[i : i + bs])

    def loss(self) -> torch.Tensor:
        """The epoch's summed loss so far, on the device (no sync)."""
        return self.step.loss_sum.clone()


class GraphedRunner:
    """The same ``TrainStep``, captured as a CUDA graph (``capture=True``) and replayed per batch.

    Invariant: every tensor the graph reads or writes is held by the step (see
    ``TrainStep``) or by this runner (the epoch's batch indices and the batch counter),
    for as long as the graph lives; ``restore`` copies into them in place, since the graph
    keeps their addresses.
    """

    def __init__(self, step: TrainStep, *, capture: bool, stream: torch.cuda.Stream | None = None) -> None:
        """Built on the training's stream (the current one): its buffers, a warm-up and its
        undo, then the capture."""
        if capture and step.rates.host_follows:
            raise NotCapturable(
                f"the schedule sets its {' and '.join(step.rates.host_columns)} from the host every step, "
                "which a graph would freeze"
            )
        if capture and stream is None:
            raise ValueError("a captured step needs the training's own stream")
        if capture and (broken := capture_broken()) is not None:  # before a warm-up that would be undone for nothing
            raise NotCapturable(f"an earlier capture failed in this process ({broken})")
        self.step, self.capture, self.stream = step, capture, stream
        bs = step.config.batch_size
        self.full_batches = step.x.shape[0] // bs
        # This epoch's full batches, and which one is next: device state the graph reads.
        self.perm = torch.zeros((max(self.full_batches, 1), bs), dtype=torch.int64, device=step.x.device)
        self.batch = torch.zeros((1,), dtype=torch.int64, device=step.x.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.fallen_back: str | None = None  # why its graph stopped replaying, if it did
        if capture:
            quiet_capturable_warning()  # before the warm-up, whose capturable Adam steps warn
        with self._on_stream():
            self._warm_up()
            if capture:
                self._capture()

    @property
    def graphed(self) -> bool:
        """Its steps are the graph's (or, without a graph, its static stand-in's), to the end."""
        return self.fallen_back is None

    def _on_stream(self) -> contextlib.AbstractContextManager[object]:
        """Everything this runner launches goes to the training's stream (CUDA), in order."""
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def _fall_back_if_broken(self) -> None:
        """After another training's capture failed, this graph replays no more: its next steps
        are the same static step, launched eagerly, from the very tensors the graph used."""
        broken = capture_broken()
        if broken is None or self.graph is None:
            return
        with contextlib.suppress(Exception):  # its pool back to the cache; the cache itself is kept
            self.graph.reset()
        self.graph = None
        self.fallen_back = f"steps eager after an earlier capture failed in this process ({broken})"

    def release(self) -> None:
        """Free the graph and its memory pool: the training is over. The gradients live in
        that pool (the captured backward wrote them), so they go first: a model kept for
        scoring would otherwise hold the pool's blocks for as long as it lives."""
        for p in self.step.params:
            p.grad = None
        if self.graph is not None:
            self.graph.reset()
            self.graph = None

    def _static_step(self) -> None:
        """The next full batch of this epoch, read from the device."""
        self.step(self.perm.index_select(0, self.batch).view(-1))
        self.batch.add_(1)

    # -- resuming ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._on_stream():
            return self.step.state()

    def restore(self, state: dict[str, Any]) -> None:
        """Copy ``state`` into the tensors the graph reads: their addresses must not change."""
        with self._on_stream():
            self.step.restore(state)

    # -- warm-up and capture ---------------------------------------------------------------
    def _warm_up(self) -> None:
        """A few static steps, then everything they changed put back: weights, the update's
        state, the generator, the counters. On the current (the training's) stream, so the
        undo lands after the warm-up's last kernel."""
        saved = self._snapshot()
        for _ in range(WARMUP_STEPS):
            self.batch.zero_()
            self._static_step()
        self._undo(saved)

    def _snapshot(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [p.detach().clone() for p in self.step.params], self.step.generator.get_state()

    def _undo(self, saved: tuple[list[torch.Tensor], torch.Tensor]) -> None:
        """Back to a fresh training's state: ``saved``'s weights and generator, the update's
        moments, buffers and step counts zero, the schedule at its first step."""
        weights, rng = saved
        step = self.step
        with torch.no_grad():
            for p, w in zip(step.params, weights, strict=True):
                p.copy_(w)
        step.update.reset()
        step.rates.reset()
        step.generator.set_state(rng)
        for counter in (self.batch, step.loss_sum):
            counter.zero_()

    def _capture(self) -> None:
        """Capture one static step on the training's stream (the current one)."""
        if (broken := capture_broken()) is not None:
            raise NotCapturable(f"an earlier capture failed in this process ({broken})")
        graph = torch.cuda.CUDAGraph()
        if self.step.augment.draws or self.step.config.model.dropout > 0:
            register = getattr(graph, "register_generator_state", None)
            if register is None:
                raise NotCapturable("this torch cannot capture a trial's own generator (dropout, augmentation)")
            with warnings.catch_warnings():  # deprecated (a no-op) from torch 2.14, where every generator is
                warnings.simplefilter("ignore", DeprecationWarning)
                register(self.step.generator)
        # capture_begin/end rather than torch.cuda.graph(), which synchronizes the whole
        # device and empties its cache first: with trainings in flight, that would stall
        # every other one. Thread-local: the other lanes keep launching from their threads.
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            self._static_step()
        finally:
            try:
                graph.capture_end()  # ends a broken capture too, so the stream is usable again
            except Exception as exc:
                # torch (up to 2.13) skips its own bookkeeping when capture_end raises: the
                # allocator keeps the capture as underway and, before 2.12, the generators
                # stay capturing. No later capture in this process can be trusted.
                mark_capture_broken(one_line(exc))
                raise
        self.graph = graph

    # -- an epoch ------------------------------------------------------------------------------
    def begin(self, perm: torch.Tensor) -> None:
        """An epoch over ``perm`` starts: its full batches copied where the graph reads them,
        the batch counter and the summed loss from zero (no sync)."""
        with self._on_stream():
            self._fall_back_if_broken()
            bs, full = self.step.config.batch_size, self.full_batches
            if full:
                self.perm.copy_(perm[: full * bs].view(full, bs))
            self.batch.zero_()
            self.step.loss_sum.zero_()

    def run(self, perm: torch.Tensor, first: int, last: int, stop: Callable[[], bool]) -> None:
        """Batches ``first`` to ``last`` (excluded) of the epoch ``begin`` started, in order:
        whole replays, and the last partial batch eagerly; no sync. The graph reads which
        batch is next from the device counter, so a run goes on where the previous one ended."""
        with self._on_stream():
            bs, full = self.step.config.batch_size, self.full_batches
            for _ in range(first, min(last, full)):
                if stop():
                    raise KeyboardInterrupt("stop requested")
                if self.graph is not None:
                    self.graph.replay()
                else:
                    self._static_step()
            if last > full and perm.shape[0] > full * bs:  # the last partial batch: the same step, not captured
                self.step(perm[full * bs :])

    def loss(self) -> torch.Tensor:
        """The epoch's summed loss so far, on the device (no sync)."""
        with self._on_stream():
            return self.step.loss_sum.clone()
