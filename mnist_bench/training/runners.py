"""How an epoch of training steps executes: eagerly, op by op, or as a replayed CUDA graph.

What a step computes (forward, loss, backward, optimizer, max-norm, augmentation) is
the same either way. Small MLPs are launch-bound on a GPU: eagerly, each step is a
hundred tiny kernels launched from Python, and the GPU idles between them. The graphed
runner captures one whole step once per training and replays it: one launch per step.
The batch's indices, the learning rate of the step and the running loss live in device
buffers the graph reads and writes; the last partial batch runs the same step eagerly.
At most one host sync per epoch (the loss, read by the caller).

Before capture the step is warmed up (cuBLAS and autograd set themselves up) and what
the warm-up changed is put back, so training starts where the eager one would. Warm-up,
undo, capture and every replay run on the training's own stream, in that order: on one
stream the undo cannot overtake the warm-up, and the graph's cuBLAS workspace is that
of the one (thread, stream) pair the training owns (see ``inflight``).

``GraphedRunner(capture=False)`` runs the very same static step, warm-up and undo
included, without a graph: the CPU tests and ``doctor`` check it against the eager
runner, and on CUDA the graph replays it. Without a graph its optimizer is the eager
step's (torch's fused one on a CPU); captured, SGD is our own ``sgd_step``, which a test
holds to the SGD a CUDA eager step uses.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from mnist_bench.augment import Augmenter

if TYPE_CHECKING:
    from mnist_bench.config import TrainConfig

WARMUP_STEPS = 3  # before capture, on the training's stream (cuBLAS and autograd set themselves up)
# A fact about this process's CUDA state, not about any training: once a capture has failed,
# later trainings train eagerly (their reason says why). Appended to, never cleared.
BROKEN_CAPTURE: list[str] = []


def quiet_capturable_warning() -> None:
    """Adam built for capture warns whenever it steps outside a capture (the warm-up, the
    last partial batch): expected here, so that one warning is filtered, process-wide."""
    warnings.filterwarnings("ignore", message=r".*capturable=True.*", category=UserWarning)


class NotCapturable(Exception):
    """This training cannot be captured as a CUDA graph; the reason says why."""


class EagerRunner:
    """Steps launched op by op: the CPU path, and the fallback on CUDA."""

    graphed = False

    def __init__(
        self,
        step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler | None,
        config: TrainConfig,
        generator: torch.Generator,
        augment: Augmenter,
    ) -> None:
        self.step, self.optimizer, self.schedule = step, optimizer, schedule
        self.config, self.generator, self.augment = config, generator, augment

    def state(self) -> dict[str, Any]:
        """Optimizer and schedule, for resuming (the weights and generator are the caller's)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state["schedule"] is not None:
            self.schedule.load_state_dict(state["schedule"])

    def epoch(self, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, stop: Callable[[], bool]) -> torch.Tensor:
        """Train over ``perm`` in batches; the summed loss, on the device (no sync)."""
        bs = self.config.batch_size
        loss_sum = torch.zeros((), device=x.device)
        for i in range(0, perm.shape[0], bs):
            if stop():  # a Python flag: no device sync
                raise KeyboardInterrupt("stop requested")
            idx = perm[i : i + bs]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # a gather, cheaper than indexing
            loss_sum += self.step(self.augment(xb, self.generator), yb)
            if self.schedule is not None:
                self.schedule.step()
        return loss_sum


def make_optimizer(config: TrainConfig, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """torch's optimizer for ``config``, its update in as few passes as the device allows.

    On a CPU, fused SGD and Adam(W): one pass over each tensor (foreach took 2 to 4 times as
    long). On CUDA, Adam(W) fused; SGD multi-tensor (foreach), which is the update the
    graphed step's own SGD (``sgd_step``) repeats exactly, one-cycle's momentum included.
    """
    params = model.parameters()
    fused = device.type == "cpu" or (device.type == "cuda" and config.optimizer != "sgd")
    fused_, foreach = (True, None) if fused else (None, True)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            fused=fused_,
            foreach=foreach,
        )
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused_, foreach=foreach)


def sgd_step(
    params: Sequence[torch.Tensor],
    buffers: Sequence[torch.Tensor],
    lr: float | torch.Tensor,
    momentum: float | torch.Tensor,
    *,
    weight_decay: float,
) -> None:
    """torch.optim.SGD's update (dampening 0, not Nesterov), rate and momentum as floats or device tensors.

    SGD itself cannot be captured with a tensor rate; this can, so a schedule runs inside
    the graph. ``buffers`` empty: no momentum. Buffers start at zero, so the first update
    is the gradient, as SGD's.
    """
    params, buffers = list(params), list(buffers)
    direction = [p.grad for p in params]
    assert all(g is not None for g in direction)
    with torch.no_grad():
        if weight_decay:
            direction = list(torch._foreach_add(direction, params, alpha=weight_decay))  # type: ignore[arg-type]
        if buffers:
            torch._foreach_mul_(buffers, momentum)  # type: ignore[call-overload]
            torch._foreach_add_(buffers, direction)  # type: ignore[arg-type]
            direction = buffers  # type: ignore[assignment]
        torch._foreach_sub_(params, torch._foreach_mul(direction, lr))  # type: ignore[arg-type, call-overload]


class GraphedRunner:
    """One whole step, captured as a CUDA graph (``capture=True``) and replayed per batch.

    Invariant: every tensor the graph reads or writes (the data, the model's parameters and
    their gradients, the optimizer's state, the batch indices, counters, schedule tables and
    rates below, the augmentation's blur matrix and constants) is held by this runner or by
    the training that holds it, for as long as the graph lives; ``restore`` copies into them
    in place, since the graph keeps their addresses.
    """

    graphed = True

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator,
        augment: Augmenter,
        schedule: dict[str, torch.Tensor],
        precision: str,
        capture: bool,
        stream: torch.cuda.Stream | None = None,
    ) -> None:
        """``schedule``: per-step tables ("lr", and "momentum" for SGD under one-cycle), empty if constant.

        Built on the training's stream (the current one): its buffers, a warm-up and its
        undo, then the capture.
        """
        if config.optimizer != "sgd" and "momentum" in schedule:
            raise NotCapturable("one-cycle cycles Adam's beta1 per step, which the graphed step does not follow")
        if capture and stream is None:
            raise ValueError("a captured step needs the training's own stream")
        self.model, self.config, self.x, self.y, self.generator = model, config, x, y, generator
        self.augment = augment
        self.capture, self.stream, self.precision = capture, stream, precision
        self.params = list(model.parameters())
        self.capped = [m.weight for m in model.modules() if isinstance(m, nn.Linear)][:-1] if config.max_norm else []
        self.full_batches = x.shape[0] // config.batch_size
        self._make_buffers(schedule)
        self._make_optimizer(momentum="momentum" in schedule)
        self.graph: torch.cuda.CUDAGraph | None = None
        if capture:
            quiet_capturable_warning()  # before the warm-up, whose capturable Adam steps warn
        with self._on_stream():
            self._warm_up()
            if capture:
                self._capture()

    def _make_buffers(self, schedule: dict[str, torch.Tensor]) -> None:
        """The device state a graph reads and writes: this epoch's full batches, which one is
        next, the step number (for the schedule), the running loss, the schedule's tables."""
        device, bs = self.x.device, self.config.batch_size
        self.perm = torch.zeros((max(self.full_batches, 1), bs), dtype=torch.int64, device=device)
        self.batch = torch.zeros((1,), dtype=torch.int64, device=device)
        self.step_no = torch.zeros((1,), dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.tables = {k: v.to(device) for k, v in schedule.items()}
        self.host_step = 0  # without a graph, the schedule is followed from the host
        # The step's rate and momentum: device scalars a graph reads when they change per step.
        self.rates: dict[str, float | torch.Tensor] = {"lr": self.config.lr, "momentum": self.config.momentum}
        if self.capture:
            for key, table in self.tables.items():
                self.rates[key] = table[0].clone()

    def _make_optimizer(self, *, momentum: bool) -> None:
        """The eager step's optimizer, its rates set from the host (``make_optimizer``), where
        nothing is captured; captured, SGD as our own update (its buffers here) and Adam(W) as
        torch's, capturable."""
        config = self.config
        self.sgd_buffers: list[torch.Tensor] = []
        self.optimizer: torch.optim.Optimizer | None = None
        if not self.capture:
            self.optimizer = make_optimizer(config, self.model, self.x.device)
            return
        if config.optimizer == "sgd":
            if config.momentum or momentum:
                self.sgd_buffers = [torch.zeros_like(p) for p in self.params]
            return
        kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = kind(
            self.params, lr=self.rates["lr"], weight_decay=config.weight_decay, capturable=True, fused=True
        )  # type: ignore[arg-type]

    def _on_stream(self) -> contextlib.AbstractContextManager[object]:
        """Everything this runner launches goes to the training's stream (CUDA), in order."""
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def release(self) -> None:
        """Free the graph and its memory pool: the training is over. The gradients live in
        that pool (the captured backward wrote them), so they go first: a model kept for
        scoring would otherwise hold the pool's blocks for as long as it lives."""
        for p in self.params:
            p.grad = None
        if self.graph is not None:
            self.graph.reset()
            self.graph = None

    # -- the step ------------------------------------------------------------------------------
    def _follow_schedule(self) -> None:
        if not self.tables:
            return
        if self.capture:  # on the device, inside the graph
            at = self.step_no.clamp(max=next(iter(self.tables.values())).shape[0] - 1)
            for key, table in self.tables.items():
                target = self.rates[key] if self.optimizer is None else self.optimizer.param_groups[0][key]
                target.copy_(table.index_select(0, at)[0])  # type: ignore[union-attr]
            self.step_no.add_(1)
            return
        for key, table in self.tables.items():
            value = float(table[min(self.host_step, table.shape[0] - 1)])
            if self.optimizer is None:
                self.rates[key] = value
            else:
                self.optimizer.param_groups[0][key] = value
        self.host_step += 1

    def _step(self, idx: torch.Tensor) -> None:
        """One training step on the images at ``idx``: everything a graph captures."""
        for p in self.params:
            p.grad = None  # backward writes fresh gradients (in a graph: into its own pool)
        xb = self.augment(self.x.index_select(0, idx), self.generator)
        yb = self.y.index_select(0, idx)
        # No autocast weight cache: a graph must recompute the casts on every replay.
        with torch.autocast(
            xb.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16", cache_enabled=False
        ):
            loss = F.cross_entropy(self.model(xb), yb, label_smoothing=self.config.label_smoothing)
        loss.backward()
        self._follow_schedule()
        if self.optimizer is not None:
            self.optimizer.step()
        else:
            sgd_step(
                self.params,
                self.sgd_buffers,
                self.rates["lr"],
                self.rates["momentum"],
                weight_decay=self.config.weight_decay,
            )
        if self.capped:
            with torch.no_grad():
                for weight in self.capped:
                    weight.copy_(torch.renorm(weight, p=2, dim=0, maxnorm=self.config.max_norm))  # type: ignore[arg-type]
        self.loss_sum.add_(loss.detach().float())

    def _static_step(self) -> None:
        """The next full batch of this epoch, read from the device."""
        idx = self.perm.index_select(0, self.batch).view(-1)
        self._step(idx)
        self.batch.add_(1)

    # -- resuming ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Optimizer state, momentum buffers and schedule position, for resuming."""
        with self._on_stream():
            return self._state()

    def _state(self) -> dict[str, Any]:
        optimizer = (
            [{k: v.detach().cpu() for k, v in self.optimizer.state[p].items()} for p in self.params]
            if self.optimizer is not None
            else []
        )
        return {
            "optimizer": optimizer,
            "sgd_buffers": [b.detach().cpu() for b in self.sgd_buffers],
            "step_no": int(self.step_no.item()),
            "host_step": self.host_step,
            "rates": {k: float(v) for k, v in self.rates.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Copy ``state`` into the tensors the graph reads: their addresses must not change."""
        with self._on_stream(), torch.no_grad():
            if self.optimizer is not None:
                for p, saved in zip(self.params, state["optimizer"], strict=True):
                    for key, value in saved.items():
                        self.optimizer.state[p][key].copy_(value)
            for buffer, saved in zip(self.sgd_buffers, state["sgd_buffers"], strict=True):
                buffer.copy_(saved)
            self.step_no.fill_(state["step_no"])
            for key, value in state["rates"].items():
                current = self.rates[key]
                if isinstance(current, torch.Tensor):
                    current.fill_(value)
                else:
                    self.rates[key] = value
        self.host_step = state["host_step"]  # without a graph, the next step reads its rates from the tables

    # -- warm-up and capture ---------------------------------------------------------------
    def _warm_up(self) -> None:
        """A few static steps, then everything they changed put back: weights, optimizer
        state, generator, counters. On the current (the training's) stream, so the undo
        lands after the warm-up's last kernel."""
        weights = [p.detach().clone() for p in self.params]
        rng = self.generator.get_state()
        for _ in range(WARMUP_STEPS):
            self.batch.zero_()
            self._static_step()
        with torch.no_grad():
            for p, w in zip(self.params, weights, strict=True):
                p.copy_(w)
            for buffer in self.sgd_buffers:
                buffer.zero_()
            if self.optimizer is not None:
                for state in self.optimizer.state.values():
                    for value in state.values():
                        if isinstance(value, torch.Tensor):
                            value.zero_()  # moments and the (device) step count
        self.generator.set_state(rng)
        for counter in (self.batch, self.step_no, self.loss_sum):
            counter.zero_()
        self.host_step = 0

    def _capture(self) -> None:
        """Capture one static step on the training's stream (the current one)."""
        if BROKEN_CAPTURE:
            raise NotCapturable(f"an earlier capture failed in this process ({BROKEN_CAPTURE[0]})")
        graph = torch.cuda.CUDAGraph()
        if self.config.augment != "none" or self.config.model.dropout > 0:
            register = getattr(graph, "register_generator_state", None)
            if register is None:
                raise NotCapturable("this torch cannot capture a trial's own generator (dropout, augmentation)")
            with warnings.catch_warnings():  # deprecated (a no-op) from torch 2.14, where every generator is
                warnings.simplefilter("ignore", DeprecationWarning)
                register(self.generator)
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
                BROKEN_CAPTURE.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:160])
                raise
        self.graph = graph

    # -- an epoch ------------------------------------------------------------------------------
    def epoch(self, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, stop: Callable[[], bool]) -> torch.Tensor:
        """Train over ``perm``; the summed loss, on the device (no sync)."""
        with self._on_stream():
            return self._epoch(perm, stop)

    def _epoch(self, perm: torch.Tensor, stop: Callable[[], bool]) -> torch.Tensor:
        bs, full = self.config.batch_size, self.full_batches
        if full:
            self.perm.copy_(perm[: full * bs].view(full, bs))
        self.batch.zero_()
        self.loss_sum.zero_()
        for _ in range(full):
            if stop():
                raise KeyboardInterrupt("stop requested")
            if self.graph is not None:
                self.graph.replay()
            else:
                self._static_step()
        if perm.shape[0] > full * bs:  # the last partial batch: the same step, not captured
            self._step(perm[full * bs :])
        return self.loss_sum.clone()
