"""Train one MLP configuration on device-resident data.

The trainer sees a frozen ``TrainConfig`` and a ``DeviceData``, never an Optuna
trial: the search trains its trials a chunk of steps at a time in lanes
(``lanes.run_in_flight``; a chunk is a whole epoch unless it asks for more reports an
epoch), reads the validation accuracy after each chunk, and stops one it prunes with ``stop_early``.
``train``'s ``on_epoch`` callback does the same for a training run alone.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mnist_bench.augment import Augmenter
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import one_line
from mnist_bench.interrupt import StopFlag
from mnist_bench.model import use_generator
from mnist_bench.training.device import give_back_memory, sync
from mnist_bench.training.saved_state import current_runner_state, saved_config
from mnist_bench.training.start import HostStart, host_start, make_step
from mnist_bench.training.step import TrainStep
from mnist_bench.training.step_runners import EagerRunner, GraphedRunner
from mnist_bench.training.timing import latency_ms

EVAL_CHUNK = 8192  # images per forward pass when scoring; bounds eval memory

# Called after every epoch with (epoch, validation accuracy); True means stop now.
EpochCallback = Callable[[int, float], bool]


@dataclass(frozen=True)
class TrainResult:
    config: TrainConfig
    val_accs: tuple[float, ...]  # validation accuracy after each epoch run (on data.x_eval)
    train_loss: tuple[float, ...]  # mean training loss of each epoch run
    train_time_s: float  # optimizer steps only; evaluation excluded
    samples_seen: int  # training images processed
    stopped_early: bool  # stopped before config.epochs (pruned: stop_early)
    diverged: str | None  # why training was abandoned (non-finite loss), else None
    model: nn.Module = field(repr=False, compare=False)
    graphed: bool = False  # steps replayed as a CUDA graph
    eager_reason: str | None = None  # on CUDA, why the steps ran eagerly
    latency_ms: float | None = None  # one image's latency, where it was measured (measure_latency)
    # Training images seen over the training split's size: epochs_run, plus the part of an
    # epoch a training stopped in (pruned after a chunk, see Training.run_chunk); None: unknown.
    epochs_trained: float | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)

    @property
    def final_acc(self) -> float:
        return self.val_accs[-1] if self.val_accs else float("nan")

    @property
    def best_acc(self) -> float:
        return max(self.val_accs) if self.val_accs else float("nan")

    @property
    def best_epoch(self) -> int:
        return 1 + self.val_accs.index(self.best_acc) if self.val_accs else 0

    @property
    def samples_per_s(self) -> float:
        return self.samples_seen / self.train_time_s if self.train_time_s > 0 else float("nan")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + EVAL_CHUNK]) for i in range(0, x.shape[0], EVAL_CHUNK)])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, x.shape[0], EVAL_CHUNK):
        correct += (model(x[i : i + EVAL_CHUNK]).argmax(1) == y[i : i + EVAL_CHUNK]).sum()
    return correct.item() / x.shape[0]  # one sync per evaluation


_SOLO_STREAMS: dict[tuple[int, torch.device], torch.cuda.Stream] = {}
_SOLO_LOCK = threading.Lock()


def solo_stream(device: torch.device) -> torch.cuda.Stream:
    """The stream of the trainings this thread runs alone (not in a lane), kept for the process.

    cuBLAS keeps a workspace per (thread's handle, stream) until the process ends: a fresh
    stream per training would leave one behind for each. Trainings alone on one thread run
    one after the other, so sharing their stream shares nothing at the same time.
    """
    key = (threading.get_ident(), device)
    with _SOLO_LOCK:
        if key not in _SOLO_STREAMS:
            _SOLO_STREAMS[key] = torch.cuda.Stream(device)
        return _SOLO_STREAMS[key]


class Training:
    """One configuration being trained, an epoch (or a chunk of one) at a time.

    ``run_chunk`` is the one stretch of steps every caller runs: the next of an epoch's
    ``reports_per_epoch`` chunks, a whole epoch by default. ``run_epoch`` runs the rest of
    an epoch's chunks, ``run_to_end`` epochs until done (``train``, doctor); the scheduler of
    trainings in flight (``lanes``) runs one chunk per training per round, side by side,
    and bench times ``run_epoch``. On CUDA it may be given its own stream, so that the
    kernels of several trainings overlap.

    It is built in two phases: ``host_start`` (initial weights drawn on the CPU, the
    schedule's rate table), which needs no device, then this constructor with it as
    ``host`` (weights moved to the device, generator, augmentation, step, runner with its
    warm-up and capture). Without ``host`` the constructor draws it first.

    Invariant: a training owns all it uses. Its random numbers (initial weights, batch
    order, dropout masks, deformations) come from generators of its own, seeded from its
    config; building or training it reads and writes no process-wide random state, since
    lanes build and train trainings on several threads at once. Every device tensor its
    steps read (a captured graph keeps their addresses) is held by it or its runner.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: DeviceData,
        *,
        score_epochs: bool = True,
        stop: StopFlag | None = None,
        runtime: Runtime | None = None,
        stream: torch.cuda.Stream | None = None,
        host: HostStart | None = None,
        reports_per_epoch: int = 1,
    ) -> None:
        if reports_per_epoch < 1:
            raise ValueError(f"{reports_per_epoch=} must be at least 1")
        if host is not None and (host.config != config or host.n_train != data.x_train.shape[0]):
            raise ValueError(f"the host start of another training (seed {host.config.seed}) cannot start this one")
        self.config, self.data, self.score_epochs, self.stop = config, data, score_epochs, stop
        self.reports_per_epoch = reports_per_epoch  # validation reports an epoch, each after a chunk of steps
        self._chunk = 0  # chunks of the current epoch run so far
        self._perm: torch.Tensor | None = None  # the current epoch's order, from its first chunk to its last
        self._host = host  # taken by the first fresh start
        runtime = runtime or Runtime()
        cuda = data.device.type == "cuda"
        # On CUDA a training runs on a stream of its own, given (a lane's, see lanes) or
        # its own, from building to its last epoch: a graph cannot be captured on the
        # default stream, and one stream keeps warm-up, undo, capture and replay in order.
        self.stream = stream if stream is not None or not cuda else solo_stream(data.device)
        self.steps_per_epoch = math.ceil(data.x_train.shape[0] / config.batch_size)
        self.eager_reason: str | None = None  # why a CUDA training runs eagerly, when it does
        with self.on_stream():
            if self.stream is not None:  # the data was made on the default stream
                self.stream.wait_stream(torch.cuda.default_stream(data.device))
            self.runner: EagerRunner | GraphedRunner = self._graphed(runtime) or self._eager(runtime)
        self.val_accs: list[float] = []
        self.train_loss: list[float] = []
        self.train_time = 0.0
        self.samples = 0
        self.stopped = False  # stop_early() was called before the last epoch
        self.diverged: str | None = None
        # One image's latency, where asked (measure_latency): once trained, and for a
        # multi-objective search's pruning once at its first report (the last measure stays).
        self.latency_ms: float | None = None

    def _host_start(self) -> HostStart:
        """The host part of a fresh start: the one drawn for this training before it was
        built, the first time; else drawn now (a training built in one phase, or its eager
        start after a failed capture, which must not start from what the capture left)."""
        host, self._host = self._host, None
        return host if host is not None else host_start(self.config, self.data)

    def _step(self, runtime: Runtime) -> TrainStep:
        """The training's own model, generator, augmentation and step, made fresh on its stream."""
        start = self._host_start()
        self.model = start.take_model().to(self.data.device)
        self.generator = torch.Generator(device=self.data.device).manual_seed(self.config.seed)
        use_generator(self.model, self.generator)  # dropout masks from the training's own stream
        self.augment = Augmenter(self.config.augment, self.config.deform, self.data.device)
        return make_step(
            self.model,
            self.config,
            self.data,
            runtime,
            generator=self.generator,
            augment=self.augment,
            table=start.table,
        )

    def _eager(self, runtime: Runtime) -> EagerRunner:
        """Steps launched op by op, from a fresh start (whatever a failed capture left)."""
        return EagerRunner(self._step(runtime))

    def _graphed(self, runtime: Runtime) -> GraphedRunner | None:
        """The graphed runner where the runtime asks for it and capture works; else None, and why."""
        cuda = self.data.device.type == "cuda"
        if not (runtime.graphs and not runtime.compile and (cuda or runtime.static_on_cpu)):
            if cuda:
                self.eager_reason = "--compile" if runtime.compile else "--steps eager"
            return None
        try:
            return GraphedRunner(self._step(runtime), capture=cuda, stream=self.stream)
        except Exception as exc:
            # NotCapturable, or anything the warm-up or capture raised: never the trial's
            # end. It trains eagerly from the state it started with and says why.
            self.eager_reason = one_line(exc)
            return None

    def on_stream(self) -> contextlib.AbstractContextManager[object]:
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    @property
    def epoch(self) -> int:
        """Epochs run so far."""
        return len(self.train_loss)

    @property
    def done(self) -> bool:
        return self.stopped or self.diverged is not None or self.epoch >= self.config.epochs

    @property
    def reports(self) -> int:
        """Validation reports so far, one after each chunk of steps (``run_chunk``): report k
        comes after k / reports_per_epoch epochs, rounded up to whole steps."""
        return self.epoch * self.reports_per_epoch + self._chunk

    @property
    def mid_epoch(self) -> bool:  # some but not all of the current epoch's chunks have run
        return self._chunk > 0

    def _chunk_batches(self, chunk: int) -> tuple[int, int]:
        """Chunk ``chunk``'s batches of an epoch, first to last (excluded): the epoch's steps
        in ``reports_per_epoch`` runs as equal as whole steps allow, each ending at or past
        its share of the epoch. Rounded up, so no report comes before a step: where an epoch
        has fewer steps than reports, the last chunks are empty (their reports repeat)."""
        steps, parts = self.steps_per_epoch, self.reports_per_epoch
        return -(-steps * chunk // parts), -(-steps * (chunk + 1) // parts)

    def run_chunk(self) -> float | None:
        """Train the next chunk of the epoch's steps (the whole epoch with one report an
        epoch); returns the validation accuracy after it (None when not scoring).

        One host sync after the chunk's steps (the time), none between them, and one per
        evaluation. The epoch's random order is drawn before its first chunk, and an
        evaluation draws no random number, so the steps are those of an unbroken epoch.
        Only the epoch's last chunk appends to the per-epoch records (``val_accs``, ``train_loss``).
        """
        device = self.data.device
        n = self.data.x_train.shape[0]
        first, last = self._chunk_batches(self._chunk)
        with self.on_stream():
            if self.stream is not None:
                self.stream.wait_stream(torch.cuda.default_stream(device))  # data made on the default stream
            self.model.train()  # an evaluation after the previous chunk left it in eval mode
            self._sync()
            start = time.perf_counter()
            if self._perm is None:
                self._perm = torch.randperm(n, device=device, generator=self.generator)
                self.runner.begin(self._perm)
            self.runner.run(self._perm, first, last, self._stopping)
            self._chunk += 1
            ends = self._chunk == self.reports_per_epoch
            loss_sum = self.runner.loss()  # summed on the device and read once per chunk: no .item() per batch
            self._sync()
            self.train_time += time.perf_counter() - start
            self.samples += min(last * self.config.batch_size, n) - first * self.config.batch_size
            loss = loss_sum.item() / max(last, 1)  # the mean over the epoch's steps so far (at its end: all)
            if ends:
                self._chunk, self._perm = 0, None
                self.train_loss.append(loss)
            val_acc = accuracy(self.model, self.data.x_eval, self.data.y_eval) if self.score_epochs else None
        if ends and val_acc is not None:
            self.val_accs.append(val_acc)
        if not math.isfinite(loss):
            # Mid-epoch too: a diverged trial is never judged (nor pruned) on a broken model's score.
            self.diverged = f"training loss became {loss} in epoch {self.epoch + (0 if ends else 1)}"
        return val_acc

    def run_epoch(self) -> float | None:
        """Train the rest of the epoch, chunk by chunk; its validation accuracy (None when not scoring)."""
        val_acc = self.run_chunk()
        while self.mid_epoch and self.diverged is None:
            val_acc = self.run_chunk()
        return val_acc

    def run_to_end(self, on_epoch: EpochCallback | None = None) -> Training:
        """Train epoch after epoch (``run_epoch``) until done; ``on_epoch`` hears each scored
        epoch that did not diverge and may stop the training there (returns True)."""
        while not self.done:
            val_acc = self.run_epoch()
            if self.diverged is None and val_acc is not None and on_epoch is not None and on_epoch(self.epoch, val_acc):
                self.stop_early()
        return self

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    @property
    def graphed(self) -> bool:
        return self.runner.graphed

    def _sync(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()
        else:
            sync(self.data.device)

    def save_state(self, path: Path) -> None:
        """Everything needed to go on from the last epoch: written whole or not at all."""
        if self.mid_epoch:
            raise ValueError("a training is saved between epochs, not after a chunk of one")
        with self.on_stream():  # read after the training's last kernel
            weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state = {
            "config": self.config.to_dict(),
            "model": weights,
            "generator": self.generator.get_state(),
            "runner": self.runner.state(),
            "train_loss": self.train_loss,
            "eval_acc": self.val_accs,  # the stored name since states were first saved
            "train_time": self.train_time,
            "samples": self.samples,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(state, partial)
        partial.replace(path)  # atomic: an interrupted save leaves the previous state

    def resume(self, path: Path) -> int:
        """Go on from a state ``save_state`` wrote for this very configuration; returns its epoch."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path} cannot be read as a training state ({type(exc).__name__})") from None
        if saved_config(state.get("config")) != self.config:
            raise ValueError(f"{path} is the state of another configuration")
        with self.on_stream(), torch.no_grad():  # ordered with the training's own work
            for name, tensor in self.model.state_dict().items():
                tensor.copy_(state["model"][name])  # in place: a captured graph holds these tensors
        self.generator.set_state(state["generator"])
        self.runner.restore(current_runner_state(state["runner"], len(list(self.model.parameters()))))
        self.train_loss, self.val_accs = list(state["train_loss"]), list(state["eval_acc"])
        self.train_time, self.samples = float(state["train_time"]), int(state["samples"])
        return self.epoch

    def release(self) -> None:
        """Free what only training needs (a captured graph and its memory pool); the model stays.

        After the training's last queued kernel: an epoch stopped by an error or Ctrl-C may
        have left replays queued that still read the graph's memory."""
        if self.stream is not None:
            with contextlib.suppress(Exception):  # a faulted device: nothing more will run anyway
                self.stream.synchronize()
        if isinstance(self.runner, GraphedRunner):
            self.runner.release()

    def measure_latency(self) -> float:
        """One image's latency through the trained model, on the training's own stream
        (``timing.latency_ms``: CUDA events, no device-wide sync); ``result`` carries it.
        After training, on the thread that trains it (a lane's); or between two chunks (the
        next ``run_chunk`` puts the model back in training mode), while no chunk of it runs."""
        self.latency_ms = latency_ms(self.model, self.data.device, stream=self.stream)
        return self.latency_ms

    def stop_early(self) -> None:
        """Pruned: no more epochs."""
        if self.epoch < self.config.epochs:
            self.stopped = True

    def result(self) -> TrainResult:
        return TrainResult(
            config=self.config,
            val_accs=tuple(self.val_accs),
            train_loss=tuple(self.train_loss),
            train_time_s=self.train_time,
            samples_seen=self.samples,
            stopped_early=self.stopped,
            diverged=self.diverged,
            model=self.model,
            graphed=self.graphed,
            eager_reason=self.eager_reason or self.runner.fallen_back,
            latency_ms=self.latency_ms,
            epochs_trained=self.samples / self.data.x_train.shape[0],
        )


def train(
    config: TrainConfig,
    data: DeviceData,
    *,
    on_epoch: EpochCallback | None = None,
    score_epochs: bool = True,
    stop: StopFlag | None = None,
    runtime: Runtime | None = None,
) -> TrainResult:
    """Train ``config`` on ``data.x_train``, scoring every epoch on ``data.x_eval``.

    ``score_epochs=False`` skips the per-epoch scores (and ``on_epoch``): final training
    on the full training set does not look at the test images until it is done.
    ``stop``, once set (by Ctrl-C), raises KeyboardInterrupt at the next batch boundary.
    """
    run = Training(config, data, score_epochs=score_epochs, stop=stop, runtime=runtime)
    try:
        run.run_to_end(on_epoch)
    finally:
        run.release()
        give_back_memory(data.device)  # a training run alone: nothing else here is capturing
    return run.result()
