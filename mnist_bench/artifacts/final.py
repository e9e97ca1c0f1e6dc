"""Final training on all 60,000 training images and one scoring on the 10,000 test images.

Used by ``best --retrain``, ``train`` and ``baselines``: the same trainer as the
search, with the test split read only here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import N_CLASSES, DeviceData, MnistSplit, ensure_split
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.training.lanes import MAX_LANES, Build, MakeTraining, Slot, run_in_flight
from mnist_bench.training.start import HostStart, host_start
from mnist_bench.training.trainer import Training, TrainResult, predict_logits


@dataclass(frozen=True)
class Evaluation:
    accuracy: float  # fraction of test images classified correctly
    per_class: tuple[float, ...]  # accuracy on each true digit 0-9
    confusion: tuple[tuple[int, ...], ...]  # confusion[true][predicted], counts
    predictions: torch.Tensor  # predicted label per image (CPU, int64)

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "per_class": list(self.per_class),
            "confusion": [list(row) for row in self.confusion],
        }


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Evaluation:
    predicted = predict_logits(model, x).argmax(1)
    confusion = torch.zeros(N_CLASSES, N_CLASSES, dtype=torch.int64, device=y.device)
    confusion.index_put_((y, predicted), torch.ones_like(y), accumulate=True)
    confusion = confusion.cpu()
    totals = confusion.sum(1).clamp(min=1)
    return Evaluation(
        accuracy=confusion.diag().sum().item() / max(len(y), 1),
        per_class=tuple((confusion.diag() / totals).tolist()),
        confusion=tuple(tuple(row) for row in confusion.tolist()),
        predictions=predicted.cpu(),
    )


@dataclass(frozen=True)
class FinalRun:
    """One seed's training on the full training set and its test scores."""

    result: TrainResult
    evaluation: Evaluation


@dataclass(frozen=True)
class FinalReport:
    runs: tuple[FinalRun, ...]  # one per seed; runs[0] is the one saved as a checkpoint
    # Accuracy of the seeds' models as a committee (probabilities averaged); never a single-model figure.
    committee: float | None = None

    @property
    def accuracies(self) -> list[float]:
        return [run.evaluation.accuracy for run in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.runs) > 1 else 0.0


@dataclass(frozen=True)
class FinalData:
    """Both splits on one device: train on all 60,000, score on the 10,000 test images."""

    device_data: DeviceData
    train: MnistSplit
    test: MnistSplit

    @classmethod
    def load(cls, data_dir: Path, device: torch.device, *, verify: bool = True, cache: Path | None = None) -> FinalData:
        """``cache``: a folder keeping the files' decompressed content for the next load (``data.load_split``)."""
        train_split = ensure_split(data_dir, "train", verify=verify, cache=cache)
        test_split = ensure_split(data_dir, "test", verify=verify, cache=cache)
        return cls(DeviceData.from_splits(train_split, test_split, device), train_split, test_split)

    @property
    def sha256(self) -> dict[str, str]:
        return {**self.train.sha256, **self.test.sha256}


def seeds_from(first: int, count: int) -> list[int]:
    if count < 1:
        raise UsageError(f"--seeds {count}: must be at least 1")
    return [first + i for i in range(count)]


@dataclass(frozen=True)
class EpochDone:
    """One seed's epoch of final training, for progress on screen."""

    seed: int
    epoch: int
    epochs: int
    train_loss: float
    train_time_s: float  # this seed's training so far
    resumed: bool = False  # this "epoch" is where a saved state was picked up


class TimeLeft:
    """The wall time a multi-seed run still needs, from the epochs this process has trained.

    Every seed starts with all its epochs to go; each ``EpochDone`` sets what is left of
    its seed. The rate is wall time per epoch trained here since the clock started (epochs
    picked up from a saved state are not counted), so seeds trained one after the other
    and seeds trained side by side are both estimated right.
    """

    def __init__(self, seeds: list[int], epochs: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._left = dict.fromkeys(seeds, epochs)
        self._trained = 0

    def update(self, done: EpochDone) -> float | None:
        """Seconds left after ``done``; None until an epoch has been trained here."""
        self._left[done.seed] = done.epochs - done.epoch
        if not done.resumed:
            self._trained += 1
        if self._trained == 0:
            return None
        return sum(self._left.values()) * (self._clock() - self._started) / self._trained


def state_path(state_dir: Path, seed: int) -> Path:
    return state_dir / f"seed-{seed}.pt"


def train_and_test(
    config: TrainConfig,
    data: DeviceData,
    seeds: list[int],
    *,
    runtime: Runtime | None = None,
    progress: Callable[[EpochDone], None] | None = None,
    state_dir: Path | None = None,
) -> FinalReport:
    """Train ``config`` once per seed on ``data.x_train`` and score each on ``data.x_eval``.

    On a GPU the seeds train side by side (``training.lanes``: a stream and thread each); on a
    CPU one after the other. Each seed trains the same either way. With ``state_dir``,
    every seed's state is saved after each epoch, and a state found there (of this very
    configuration) is resumed from its last epoch instead of starting over.
    """
    todo = list(seeds)
    done: dict[int, TrainResult] = {}
    resumed: dict[int, tuple[int, float]] = {}  # seed: epoch and train time its saved state had reached

    def make(seed: int, host: HostStart, stream: torch.cuda.Stream | None) -> Training:  # on the seed's lane
        training = Training(host.config, data, score_epochs=False, runtime=runtime, stream=stream, host=host)
        if state_dir is not None and state_path(state_dir, seed).is_file():
            try:
                resumed[seed] = (training.resume(state_path(state_dir, seed)), training.train_time)
            except ValueError as exc:
                raise MnistBenchError(f"cannot resume: {exc}; pass --restart to train from scratch") from None
        return training

    def start(_lane: int) -> tuple[int, MakeTraining] | None:
        if not todo:
            return None
        seed = todo.pop(0)
        # Its weights are drawn and its rate table computed on its lane outside the exclusive build.
        return seed, Build(partial(host_start, replace(config, seed=seed), data), partial(make, seed))

    def judge(slot: Slot[int]) -> bool:
        training, seed = slot.training, slot.tag
        if slot.error is not None:
            raise MnistBenchError(slot.error)
        assert training is not None
        trained = True  # an epoch ran since the last judgement (not so for a finished seed picked up)
        if seed in resumed:
            epoch, seconds = resumed.pop(seed)
            trained = training.epoch > epoch
            if progress is not None:
                progress(EpochDone(seed, epoch, config.epochs, training.train_loss[epoch - 1], seconds, True))
        # Saved after the last epoch too: a run killed during a later seed keeps this one whole.
        if state_dir is not None and trained and training.diverged is None:
            training.save_state(state_path(state_dir, seed))
        if progress is not None and trained:
            progress(EpochDone(seed, training.epoch, config.epochs, training.train_loss[-1], training.train_time))
        if training.done:
            done[seed] = training.result()
        return training.done

    # Side by side on a GPU (more seeds than lanes wait their turn); one at a time on a CPU,
    # whose cores one training already keeps busy, and under --compile (lanes.check_parallel).
    runtime = runtime or Runtime()
    side_by_side = data.device.type == "cuda" and runtime.side_by_side and not runtime.compile
    lanes = min(len(seeds), MAX_LANES) if side_by_side else 1
    run_in_flight(lanes, start, judge, lambda slot, reason: None, device=data.device)
    runs = []
    for seed in seeds:
        result = done[seed]
        if result.diverged:
            raise MnistBenchError(f"{config.model.layers} with seed {seed} diverged: {result.diverged}")
        runs.append(FinalRun(result, evaluate(result.model, data.x_eval, data.y_eval)))
    models = [run.result.model for run in runs]
    return FinalReport(tuple(runs), committee_accuracy(models, data.x_eval, data.y_eval) if len(runs) > 1 else None)


@torch.no_grad()
def committee_accuracy(models: list[nn.Module], x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the models' averaged class probabilities (a committee, as Ciresan et al. 2011 report)."""
    probs = torch.stack([predict_logits(m, x).softmax(1) for m in models]).mean(0)
    return (probs.argmax(1) == y).float().mean().item()


def _versions() -> dict[str, str]:
    import platform  # noqa: PLC0415

    import numpy  # noqa: PLC0415
    import optuna  # noqa: PLC0415

    from mnist_bench import __version__  # noqa: PLC0415

    return {
        "mnist_bench": __version__,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def save_final(report: FinalReport, data: FinalData, out_dir: Path, *, source: dict[str, object]) -> list[Path]:
    """Save runs[0] as a checkpoint with its metrics, plus the two PNG figures."""
    from mnist_bench.artifacts import checkpoint, figures  # noqa: PLC0415
    from mnist_bench.training.device import environment  # noqa: PLC0415

    first = report.runs[0]
    result, evaluation = first.result, first.evaluation
    title = f"{result.config.model.layers} {result.config.optimizer}: test accuracy {evaluation.accuracy:.4f}"
    metadata = {
        "seed": result.config.seed,
        "source": source,
        "data_sha256": data.sha256,
        "versions": _versions(),
        "environment": environment(data.device_data.device),
        "train_time_s": result.train_time_s,
        "samples_per_s": result.samples_per_s,
        "final_train_loss": result.train_loss[-1],
        "test": evaluation.to_dict(),
        "seeds": {
            "seeds": [run.result.config.seed for run in report.runs],
            "test_accuracy": report.accuracies,
            "mean": report.mean,
            "std": report.std,
            "committee_test_accuracy": report.committee,
        },
    }
    return [
        checkpoint.save(out_dir, result.model, result.config, metadata),
        figures.confusion_png(evaluation.confusion, out_dir / "confusion.png", title=title),
        figures.predictions_png(
            data.test.images, data.test.labels, evaluation.predictions, out_dir / "predictions.png", title=title
        ),
    ]
