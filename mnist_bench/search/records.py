"""What a study and each of its trials store, as typed records: written here, and read here alone.

Optuna keeps a study's and a trial's attributes as dicts of JSON values. ``record_*``
write them under the names every version so far has used, so studies written by earlier
versions load here and Optuna's own dashboard shows the same names; ``StudyRecord.of``
and ``TrialRecord.of`` read them back into frozen dataclasses, with None (or a default)
for whatever an earlier version did not write. The rest of the package reads study and
trial attributes only through the records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from mnist_bench import STREAMS_VERSION, __version__
from mnist_bench.search.space import SearchSpace
from mnist_bench.training.trainer import TrainResult

# Stored attribute names (trial user attributes unless said otherwise). Renaming one
# would hide it from studies already written: keep them.
EPOCHS_RUN = "epochs_run"
EPOCHS_TRAINED = "epochs_trained"  # epochs_run, plus the part of an epoch a trial was pruned in
TRAIN_TIME_S = "train_time_s"
SAMPLES_PER_S = "samples_per_s"
FINAL_VAL_ACC = "final_val_acc"
BEST_VAL_ACC = "best_val_acc"
BEST_EPOCH = "best_epoch"
VAL_ACC = "val_acc"  # the per-epoch list
TRAIN_LOSS = "train_loss"
N_PARAMS = "n_params"
STEP = "step"
EAGER_REASON = "eager_reason"
LATENCY_MS = "latency_ms"
TRAIN_SEED = "train_seed"
DEVICE = "device"
REASON = "reason"
PROMOTED_FROM = "promoted_from"  # also a study attribute of a promotion study: its short study's name
STREAMS = "streams_version"  # also a study attribute: the streams the study was created with
MNIST_BENCH_VERSION = "mnist_bench_version"  # study attribute: the package version that created it
RETRY_OF = "failed_trial"  # system attribute, set by Optuna on the retry of a stale trial
# A multi-objective trial's objective values at a rung it reached (search.moasha), one
# attribute a rung, "rung_3": {"trial": its number, "values": [...]}. The number keeps a
# trial's own values apart from those a retry of a stale trial inherits with its attributes.
RUNG_PREFIX = "rung_"
# Study attributes, each written once, when the study is created (``record_new_study``).
STUDY_SPACE = "space"  # the search space, as SearchSpace.to_dict
STUDY_VAL_SIZE = "val_size"
STUDY_OBJECTIVE = "objective"  # the first objective, in words
STUDY_OBJECTIVES = "objectives"
STUDY_SAMPLER = "sampler"
STUDY_PRUNER = "pruner"
STUDY_EPOCHS = "epochs"
STUDY_REPORTS = "reports_per_epoch"  # what its trials' report steps count (see pruners)
STUDY_SEED = "seed"
STUDY_TORCH = "torch"  # torch's version
# What a study or trial without STREAMS was made with, when nothing else says: the
# version that stored neither attribute was 0.1.0's first search.
EARLIEST_STREAMS = "0.1.0"


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored: its state, objective values and every attribute mnist-bench writes."""

    number: int  # the trial's number in its study
    state: TrialState
    values: tuple[float, ...] | None  # objective values, accuracy first; None unless complete
    # Best validation accuracy over the epochs trained: *the* trial's accuracy. The first
    # objective value of a complete trial; a pruned one has it too. None if it never
    # finished an epoch.
    accuracy: float | None
    final_accuracy: float | None  # validation accuracy after its last epoch
    val_accs: tuple[float, ...]  # validation accuracy after each epoch run, from epoch 1
    best_epoch: int | None  # the epoch (from 1) that reached ``accuracy``
    epochs_run: int | None  # whole epochs trained; None if its training never finished (failed, running)
    # Epochs trained, with the part of an epoch a trial pruned after a chunk of it trained
    # (1.33: a third into its second); epochs_run where a trial stored only that.
    epochs_trained: float | None
    train_loss: tuple[float | None, ...]  # mean training loss of each epoch; None where not finite
    train_time_s: float | None  # optimizer steps only, evaluation excluded
    samples_per_s: float | None  # training images per second of train_time_s
    n_params: int | None  # the model's parameter count
    latency_ms: float | None  # time to classify one image, measured after training (complete trials)
    step: str | None  # how its steps ran: "graphed" or "eager"
    eager_reason: str | None  # on CUDA, why its steps were not graphed
    train_seed: int | None  # root of its training's random streams: retrains it exactly
    device: str | None  # the device it trained on, e.g. "cuda:0"
    reason: str  # why it was pruned or failed ("" if nothing was said)
    promoted_from: int | None  # in a promotion study: the short study's trial trained longer here
    retry_of: int | None  # the stale (crashed) trial whose parameters this one runs again
    # The random streams it trained with (``mnist_bench.STREAMS_VERSION``); None for a trial
    # stored before trials recorded it (0.2.0 or earlier: see ``StudyRecord.streams_version``).
    streams_version: str | None
    # Report -> its objective values there, at each rung it reached in a multi-objective
    # search pruned by moasha (empty otherwise); what another trial at the same rung is ranked against.
    rung_values: dict[int, tuple[float, ...]]

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a stored trial; attributes it lacks (an earlier version's) read as None."""
        attrs = trial.user_attrs
        values = tuple(float(v) for v in trial.values) if trial.values else None
        accuracy = _float(attrs.get(BEST_VAL_ACC))
        epochs_run = _int(attrs.get(EPOCHS_RUN))
        epochs_trained = _float(attrs.get(EPOCHS_TRAINED))
        # A complete trial that stored only its objective. (One that stored None finished no
        # epoch: a pruned trial's value is then Optuna's, its last report inside an epoch.)
        if BEST_VAL_ACC not in attrs and values:
            accuracy = values[0]
        return cls(
            number=trial.number,
            state=trial.state,
            values=values,
            accuracy=accuracy,
            final_accuracy=_float(attrs.get(FINAL_VAL_ACC)),
            val_accs=tuple(float(a) for a in attrs.get(VAL_ACC) or ()),
            best_epoch=_int(attrs.get(BEST_EPOCH)),
            epochs_run=epochs_run,
            epochs_trained=_float(epochs_run) if epochs_trained is None else epochs_trained,
            train_loss=tuple(None if x is None else float(x) for x in attrs.get(TRAIN_LOSS) or ()),
            train_time_s=_float(attrs.get(TRAIN_TIME_S)),
            samples_per_s=_float(attrs.get(SAMPLES_PER_S)),
            n_params=_int(attrs.get(N_PARAMS)),
            latency_ms=_float(attrs.get(LATENCY_MS)),
            step=_str(attrs.get(STEP)),
            eager_reason=_str(attrs.get(EAGER_REASON)),
            train_seed=_int(attrs.get(TRAIN_SEED)),
            device=_str(attrs.get(DEVICE)),
            reason=str(attrs.get(REASON) or ""),
            promoted_from=_int(attrs.get(PROMOTED_FROM)),
            retry_of=_int(trial.system_attrs.get(RETRY_OF)),
            streams_version=_str(attrs.get(STREAMS)),
            rung_values=_rung_values(trial.number, attrs),
        )


def _rung_values(number: int, attrs: dict[str, Any]) -> dict[int, tuple[float, ...]]:
    """The trial's own values at its rungs. Other workers read these while the trial trains,
    so what does not read whole (or was inherited by a retry) is left out, not an error."""
    rungs: dict[int, tuple[float, ...]] = {}
    for key, stored in attrs.items():
        if not key.startswith(RUNG_PREFIX):
            continue
        try:
            if stored["trial"] == number:
                rungs[int(key.removeprefix(RUNG_PREFIX))] = tuple(float(v) for v in stored["values"])
        except (KeyError, TypeError, ValueError):
            continue
    return dict(sorted(rungs.items()))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def record_start(trial: optuna.Trial, *, seed: int, device: str) -> None:
    """What a trial is about to train with: its seed, device and random streams."""
    trial.set_user_attr(TRAIN_SEED, seed)
    trial.set_user_attr(DEVICE, device)
    trial.set_user_attr(STREAMS, STREAMS_VERSION)


def record_trial(trial: optuna.Trial, result: TrainResult) -> None:
    """A finished training's figures on its trial (pruned, diverged or complete alike)."""
    scored = bool(result.val_accs)  # not a trial pruned (or diverged) inside its first epoch
    attrs: dict[str, Any] = {
        EPOCHS_RUN: result.epochs_run,
        EPOCHS_TRAINED: None if result.epochs_trained is None else round(result.epochs_trained, 4),
        TRAIN_TIME_S: round(result.train_time_s, 4),
        SAMPLES_PER_S: round(result.samples_per_s, 1),
        FINAL_VAL_ACC: result.final_acc if scored else None,
        BEST_VAL_ACC: result.best_acc if scored else None,
        BEST_EPOCH: result.best_epoch if scored else None,
        VAL_ACC: list(result.val_accs),
        TRAIN_LOSS: [x if math.isfinite(x) else None for x in result.train_loss],  # JSON has no NaN
        N_PARAMS: result.config.model.n_params,
        STEP: "graphed" if result.graphed else "eager",
    }
    if result.eager_reason is not None:
        attrs[EAGER_REASON] = result.eager_reason  # on CUDA: why this trial was not graphed
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def record_reason(trial: optuna.Trial, reason: str) -> None:
    """Why a trial was pruned, failed or did not train: one line, for the leaderboard."""
    trial.set_user_attr(REASON, reason)


def record_latency(trial: optuna.Trial, latency_ms: float) -> None:
    trial.set_user_attr(LATENCY_MS, latency_ms)


def record_rung(trial: optuna.Trial, report: int, values: tuple[float, ...]) -> None:
    """A multi-objective trial's objective values at the rung of report ``report``: one write,
    so another worker reads all of them or none."""
    trial.set_user_attr(f"{RUNG_PREFIX}{report}", {"trial": trial.number, "values": list(values)})


def rung_values(trials: list[FrozenTrial], report: int) -> dict[int, tuple[float, ...]]:
    """Trial number -> its objective values at the rung of report ``report``, for every trial
    in ``trials`` that reached it (whatever its state)."""
    records = (TrialRecord.of(t) for t in trials)
    return {r.number: r.rung_values[report] for r in records if report in r.rung_values}


def seed_to_reuse(trial: optuna.Trial) -> int | None:
    """The training seed a new trial already holds: a retry of a stale trial comes with its attributes."""
    seed = trial.user_attrs.get(TRAIN_SEED)
    return None if seed is None else int(seed)


def promotion_attrs(short: TrialRecord) -> dict[str, Any]:
    """The attributes a promoted trial is enqueued with: where it came from, and its seed."""
    attrs: dict[str, Any] = {PROMOTED_FROM: short.number}
    if short.train_seed is not None:  # the same seed: the same recipe, trained longer
        attrs[TRAIN_SEED] = short.train_seed
    return attrs


@dataclass(frozen=True)
class StudyRecord:
    """One study as stored: what it searches and how it was started.

    A resume compares ``space``, ``val_size``, ``objectives`` and ``reports_per_epoch`` with its own settings
    (``loop.open_study``) and ``streams_version`` with this version's (``study.check_streams``);
    the rest says, in reports, what the study was started with (a resume may change it).
    """

    space: SearchSpace | None  # what its trials may choose; None for a study mnist-bench did not create
    val_size: int | None  # training images held out for validation
    objective: str | None  # the first objective, in words
    # What it optimizes, accuracy first; ("accuracy",) for a study made before it was
    # stored, when accuracy was the only objective.
    objectives: tuple[str, ...]
    mnist_bench_version: str | None  # the package version that created it
    # The random streams it was created with. Never None: a study made before they were
    # stored holds only the version that created it, and 0.1.0 and 0.2.0 each had their own
    # streams, so that version names them too (a study made by 0.2.0 resumes with 0.2.0's
    # streams, unchanged since); one that stored neither is 0.1.0's.
    streams_version: str
    # The settings it was started with. None for a study made before they were stored,
    # all five at once; ``seed`` is also None for an unseeded study (tell the two apart by
    # ``sampler``).
    sampler: str | None
    pruner: str | None
    epochs: int | None  # the most epochs one trial may train
    # Validation reports an epoch: its trials' intermediate values are at steps counted in
    # reports, from 1 (pruners.py). 1 for a study made before it was stored.
    reports_per_epoch: int
    seed: int | None
    torch_version: str | None
    promoted_from: str | None  # a promotion study's short study (see ``promote``); None for any other

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        """The record of a stored study; attributes it lacks (an earlier version's) read as None or defaults."""
        attrs = study.user_attrs  # one read from the storage
        space = attrs.get(STUDY_SPACE)
        objectives = attrs.get(STUDY_OBJECTIVES)
        streams = attrs.get(STREAMS) or attrs.get(MNIST_BENCH_VERSION)
        return cls(
            space=None if space is None else SearchSpace.from_dict(space, source=f"study {study.study_name!r}"),
            val_size=_int(attrs.get(STUDY_VAL_SIZE)),
            objective=_str(attrs.get(STUDY_OBJECTIVE)),
            objectives=tuple(str(o) for o in objectives) if objectives else ("accuracy",),
            mnist_bench_version=_str(attrs.get(MNIST_BENCH_VERSION)),
            streams_version=str(streams) if streams else EARLIEST_STREAMS,
            sampler=_str(attrs.get(STUDY_SAMPLER)),
            pruner=_str(attrs.get(STUDY_PRUNER)),
            epochs=_int(attrs.get(STUDY_EPOCHS)),
            reports_per_epoch=_int(attrs.get(STUDY_REPORTS)) or 1,
            seed=_int(attrs.get(STUDY_SEED)),
            torch_version=_str(attrs.get(STUDY_TORCH)),
            promoted_from=_str(attrs.get(PROMOTED_FROM)),
        )


def record_new_study(
    study: optuna.Study,
    *,
    space: SearchSpace,
    val_size: int,
    objectives: tuple[str, ...],
    sampler: str,
    pruner: str,
    epochs: int,
    seed: int | None,
    reports_per_epoch: int = 1,
) -> None:
    """What a study being created searches and is started with, and this version's name and streams."""
    attrs: dict[str, Any] = {
        STUDY_SPACE: space.to_dict(),
        STUDY_VAL_SIZE: val_size,
        STUDY_OBJECTIVE: "best validation accuracy over the epochs trained",
        STUDY_OBJECTIVES: list(objectives),
        MNIST_BENCH_VERSION: __version__,
        STREAMS: STREAMS_VERSION,
        STUDY_SAMPLER: sampler,
        STUDY_PRUNER: pruner,
        STUDY_EPOCHS: epochs,
        STUDY_REPORTS: reports_per_epoch,
        STUDY_SEED: seed,
        STUDY_TORCH: torch.__version__,
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)


def record_promoted_from(study: optuna.Study, short_study: str) -> None:
    """A promotion study's source: the short study whose trials it trains longer."""
    study.set_user_attr(PROMOTED_FROM, short_study)
