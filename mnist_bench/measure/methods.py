"""Search methods against each other: each one's anytime curve over seeded repeats.

A method is a sampler with a pruner (``tpe+median``). Each runs ``repeats`` real searches
(seeds ``seed``, ``seed + 1``, ...) on the same space, data and budget, each in a fresh study
of its own, one after another: never two at once, since the curves are read off the clock.
The searches are the search's own (``search.loop``: ``open_study``, ``run_trials``) on data
loaded once, as ``search.job`` loads it; the curves and their summary are ``search.anytime``'s.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from mnist_bench import __version__
from mnist_bench.config import Runtime
from mnist_bench.data import DeviceData, ensure_split
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.interrupt import StopFlag
from mnist_bench.measure.anytime_figure import anytime_png
from mnist_bench.search.anytime import (
    AnytimeCurve,
    anytime_curve,
    first_start,
    median_best_at,
    moments,
    reference_se,
    seconds_to_within,
    trials_per_minute,
)
from mnist_bench.search.loop import finished_trials, open_study, run_trials
from mnist_bench.search.pruners import pruner_spec
from mnist_bench.search.records import StudyRecord
from mnist_bench.search.samplers import sampler_spec
from mnist_bench.search.space import SearchSpace
from mnist_bench.search.stopping import flat_stop, plateau
from mnist_bench.search.study import SearchSettings
from mnist_bench.storage.rdb import open_storage
from mnist_bench.storage.trial_states import n_finished
from mnist_bench.training.device import environment, resolve_device

STORAGE_FILE = "methods.db"  # every repeat's study, under the output folder
CURVES_FILE = "curves.csv"
SUMMARY_FILE = "summary.json"
FIGURE_FILE = "anytime.png"


@dataclass(frozen=True)
class Method:
    """One way to search: a sampler (``search.samplers``) with a pruner (``search.pruners``),
    judging each trial ``reports`` times an epoch (``search --reports-per-epoch``)."""

    sampler: str
    pruner: str
    reports: int = 1

    @property
    def name(self) -> str:
        return f"{self.sampler}+{self.pruner}" + (f"@{self.reports}" if self.reports > 1 else "")

    def study(self, seed: int) -> str:
        """The name of its repeat ``seed``'s study (a study name holds no '+' nor '@')."""
        reports = f"-r{self.reports}" if self.reports > 1 else ""
        return f"{self.sampler}-{self.pruner}{reports}-seed{seed}"


def parse_methods(text: str) -> tuple[Method, ...]:
    """``tpe+median,random+median,tpe+asha@3`` as methods, each name checked against its
    registry; ``@N`` is the reports per epoch (1 when left out)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("name at least one method, e.g. tpe+median")
    methods = []
    for name in names:
        sampler, plus, rest = name.partition("+")
        if not plus:
            raise ValueError(f"{name!r} is not SAMPLER+PRUNER[@REPORTS], e.g. tpe+median or tpe+asha@3")
        pruner, at, reports = rest.partition("@")
        if at and not (reports.isdigit() and int(reports) >= 1):
            raise ValueError(f"{name!r}: reports per epoch after '@' must be a whole number >= 1")
        sampler_spec(sampler)
        pruner_spec(pruner)
        methods.append(Method(sampler, pruner, int(reports) if at else 1))
    if len(set(methods)) < len(methods):
        raise ValueError(f"{text!r} names a method twice")
    return tuple(methods)


@dataclass(frozen=True)
class MethodsSettings:
    methods: tuple[Method, ...]  # compared in this order
    repeats: int = 5  # seeded searches per method: seeds seed, seed + 1, ...
    trials: int = 50  # finished trials per search
    epochs: int = 10  # most epochs per trial
    seed: int = 0  # the first repeat's study seed
    val_size: int = 5000  # training images held out for validation: the curves' accuracies
    runtime: Runtime = field(default_factory=Runtime)  # how every trial's steps execute

    def __post_init__(self) -> None:
        if not self.methods:
            raise UsageError("--methods: name at least one method, e.g. tpe+median")
        if self.repeats < 1:
            raise UsageError(f"--repeats {self.repeats}: must be at least 1")
        for method in self.methods:  # every search's own checks, before any data loads
            self.search(method, self.seed, "sqlite:///unused.db")

    @classmethod
    def quick(cls, methods: tuple[Method, ...]) -> MethodsSettings:
        """A run two CPU cores finish in minutes: few repeats of short searches."""
        return cls(methods, repeats=2, trials=10, epochs=2)

    @property
    def seeds(self) -> range:
        return range(self.seed, self.seed + self.repeats)

    def search(self, method: Method, seed: int, storage: str) -> SearchSettings:
        """The settings of one repeat: one trial at a time, since the clock is what is read."""
        return SearchSettings(
            study=method.study(seed), storage=storage, trials=self.trials, epochs=self.epochs,
            pruner=method.pruner, sampler=method.sampler, reports_per_epoch=method.reports, seed=seed,
            val_size=self.val_size, runtime=self.runtime,
        )  # fmt: skip


@dataclass(frozen=True)
class Repeat:
    """One seeded search of one method, as its curve."""

    method: str  # Method.name
    seed: int
    study: str  # its study in the run's storage
    curve: AnytimeCurve
    flat: FlatReplay | None = None  # where --stop-when-flat would have stopped it; None: never


@dataclass(frozen=True)
class FlatReplay:
    """What ``search --stop-when-flat`` would have done to a finished search. The option only
    ends a search sooner (every trial before its stop is the same), so replaying its rule over
    the stored trials is exact."""

    seconds: float  # since the search's start, when the trial after which it stops ended
    finished: int  # finished trials by then
    best: float  # the best complete trial's accuracy by then
    full_best: float  # the best complete trial's accuracy of the whole search
    se: float  # the whole search's best's binomial standard error

    @property
    def kept(self) -> bool:
        """Whether the stopped search's best is within one standard error of the whole one's."""
        return self.full_best - self.best <= self.se


def replay_flat_stop(study: optuna.Study, started: datetime, val_size: int) -> FlatReplay | None:
    """``--stop-when-flat`` replayed over a search's finished trials (one at a time, as
    ``methods`` runs them): the first prefix after which its rule holds."""
    finished = finished_trials(study)
    whole = plateau(finished, val_size)
    ends = {t.number: t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete}
    for k in range(1, len(finished) + 1):
        stop = flat_stop(finished[:k], val_size)
        if stop is not None and whole is not None:
            seconds = (ends[finished[k - 1][0]] - started).total_seconds()
            return FlatReplay(seconds, k, stop.plateau.best, whole.best, whole.best_se)
    return None


@dataclass(frozen=True)
class MethodSummary:
    """A method's repeats against the best accuracy any method found."""

    method: str
    repeats: int
    reached: int  # repeats that came within one SE of the best
    # Median seconds to within one SE of the best (None when most repeats never did), and
    # the fastest and slowest repeat (a repeat that never did is slowest, as None).
    s_to_within_median: float | None
    s_to_within_min: float | None
    s_to_within_max: float | None
    final_best_median: float
    final_best_min: float
    final_best_max: float
    trials_per_min: float  # median over repeats
    # --stop-when-flat replayed: repeats it would have stopped before their --trials, the
    # median share of their wall time it would have taken, and how many kept a best within
    # one standard error of their whole search's.
    flat_stopped: int = 0
    flat_time_share_median: float | None = None
    flat_kept: int = 0
    # Against the first method, seed by seed: the time this one took to come within one SE
    # of the best the first found with the same seed, over the time the first took to come
    # within one SE of its own best (median over seeds; None where most never did), and on
    # how many seeds this one's best is no lower than the first's.
    vs_first_time_ratio: float | None = None
    vs_first_not_lower: int = 0
    # The anytime curve at round moments (``search.anytime.moments``, the same for every
    # method of a run): seconds since the start -> the median over repeats of the best found
    # by then (None while most repeats had found nothing).
    best_so_far: dict[int, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodsResult:
    settings: MethodsSettings
    repeats: tuple[Repeat, ...]
    best: float  # the best validation accuracy any repeat of any method found
    se: float  # its binomial standard error on the validation split: closer is tied
    summaries: tuple[MethodSummary, ...]
    storage: str  # where the studies are, for ``report`` to compare them
    env: dict[str, Any]  # device, versions and CPU count the curves were measured on


def run_methods(
    settings: MethodsSettings,
    space: SearchSpace,
    *,
    data_dir: Path,
    verify: bool,
    device: str,
    out: Path,
    restart: bool = False,
    stop: StopFlag | None = None,
    on_repeat: Callable[[Repeat, bool], None] | None = None,
) -> MethodsResult:
    """Run every method's repeats, each in a study of its own in ``out``/methods.db, and
    summarize their curves; the curves, summary and figure are written after every repeat,
    so a run cut short keeps what it finished.

    A repeat whose study an earlier run finished (``--trials`` finished trials, the same
    space, validation split and epochs) is read back, not run again; one it left unfinished
    is run afresh (its clock was broken). ``restart`` forgets every earlier search in
    ``out``. ``on_repeat`` hears of each repeat, and whether it was read back.
    """
    split = ensure_split(data_dir, "train", verify=verify)
    torch_device = resolve_device(device)
    data = DeviceData.with_validation(split, torch_device, val_size=settings.val_size)
    del split
    out.mkdir(parents=True, exist_ok=True)
    db = out / STORAGE_FILE
    if restart:
        db.unlink(missing_ok=True)
    storage = f"sqlite:///{db}"
    env = dict(environment(torch_device))
    repeats: list[Repeat] = []
    # Seed by seed, every method in turn: a machine that slows down midway slows all alike.
    for seed in settings.seeds:
        for method in settings.methods:
            search = settings.search(method, seed, storage)
            kept = finished_repeat(search, space, method)
            repeat = kept or run_repeat(search, space, data, method, stop)
            repeats.append(repeat)
            if any(not math.isnan(r.curve.final_best) for r in repeats):  # something to summarize
                write_methods(methods_result(settings, repeats, storage, env), out)
            if on_repeat is not None:
                on_repeat(repeat, kept is not None)
    return methods_result(settings, repeats, storage, env)


def methods_result(
    settings: MethodsSettings, repeats: Sequence[Repeat], storage: str, env: dict[str, Any]
) -> MethodsResult:
    best, se, summaries = summarize(repeats, settings)
    return MethodsResult(settings, tuple(repeats), best, se, summaries, storage, env)


def finished_repeat(search: SearchSettings, space: SearchSpace, method: Method) -> Repeat | None:
    """The repeat an earlier run finished in this storage, read back; None where there is none
    (a study it left unfinished is deleted: it runs again from its first trial)."""
    storage = open_storage(search.storage, heartbeat_s=search.heartbeat_s)
    if search.study not in {s.study_name for s in storage.get_all_studies()}:
        return None
    study = optuna.load_study(study_name=search.study, storage=storage)
    record = StudyRecord.of(study)
    if (record.space, record.val_size, record.epochs) != (space, search.val_size, search.epochs):
        raise UsageError(
            f"{search.storage} holds a search {search.study!r} with another space, --val-size or --epochs: "
            "pass --restart to time every search again, or another --out"
        )
    if n_finished(study) < search.trials:
        optuna.delete_study(study_name=search.study, storage=storage)
        return None
    return repeat_of(study, method, search)


def run_repeat(
    search: SearchSettings, space: SearchSpace, data: DeviceData, method: Method, stop: StopFlag | None
) -> Repeat:
    """One seeded search in a fresh study."""
    study = open_study(search, space, open_storage(search.storage, heartbeat_s=search.heartbeat_s))
    run_trials(search, space, data, study=study, stop=stop)
    return repeat_of(study, method, search)


def repeat_of(study: optuna.Study, method: Method, search: SearchSettings) -> Repeat:
    """A finished search as a repeat: its curve timed from its first trial's start (as stored,
    so a repeat read back is the repeat that ran), and ``--stop-when-flat`` replayed over it."""
    trials = study.get_trials(deepcopy=False)
    started = first_start(trials)
    assert search.seed is not None and started is not None  # a finished search started a trial
    curve = anytime_curve(trials, started)
    return Repeat(method.name, search.seed, search.study, curve, replay_flat_stop(study, started, search.val_size))


def _median(values: Sequence[float | None]) -> float | None:
    """The median, with None (never) as worse than any number; None when it falls there."""
    middle = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(middle) else middle


def summarize(repeats: Sequence[Repeat], settings: MethodsSettings) -> tuple[float, float, tuple[MethodSummary, ...]]:
    """The best accuracy of all repeats, its SE, and each method's repeats against it."""
    finals = [r.curve.final_best for r in repeats if not math.isnan(r.curve.final_best)]
    if not finals:
        raise MnistBenchError("no repeat finished a trial with an accuracy: nothing to compare")
    best = max(finals)
    se = reference_se(best, settings.val_size)
    at = moments([r.curve for r in repeats])
    summaries = []
    for method in settings.methods:
        own = [r for r in repeats if r.method == method.name]
        if not own:  # a run cut short (or still going) before this method's first repeat
            continue
        times = [seconds_to_within(r.curve, best, se) for r in own]
        reached = sorted(t for t in times if t is not None)
        own_finals = [r.curve.final_best for r in own]
        summaries.append(
            MethodSummary(
                method=method.name,
                repeats=len(own),
                reached=len(reached),
                s_to_within_median=_median(times),
                s_to_within_min=reached[0] if reached else None,
                s_to_within_max=reached[-1] if len(reached) == len(times) else None,
                final_best_median=statistics.median(own_finals),
                final_best_min=min(own_finals),
                final_best_max=max(own_finals),
                trials_per_min=statistics.median(trials_per_minute(r.curve) for r in own),
                **flat_summary(own),
                **against_first(own, [r for r in repeats if r.method == settings.methods[0].name], settings.val_size),
                best_so_far=dict(zip(at, median_best_at([r.curve for r in own], at), strict=True)),
            )
        )
    return best, se, tuple(summaries)


def against_first(own: Sequence[Repeat], first: Sequence[Repeat], val_size: int) -> dict[str, Any]:
    """A method's repeats against the first method's of the same seeds (``vs_first_*``)."""
    ratios: list[float | None] = []
    not_lower = 0
    for ref in first:
        mine = next((r for r in own if r.seed == ref.seed), None)
        target = ref.curve.final_best
        if mine is None or math.isnan(target):
            continue
        se = reference_se(target, val_size)
        t_ref, t_mine = seconds_to_within(ref.curve, target, se), seconds_to_within(mine.curve, target, se)
        ratios.append(None if t_mine is None or not t_ref else t_mine / t_ref)
        not_lower += mine.curve.final_best >= target
    return {"vs_first_time_ratio": _median(ratios) if ratios else None, "vs_first_not_lower": not_lower}


def flat_summary(own: Sequence[Repeat]) -> dict[str, Any]:
    """A method's repeats with ``--stop-when-flat`` replayed; a repeat it never stopped took
    its whole time (share 1)."""
    stopped = [r.flat for r in own if r.flat is not None]
    shares = [r.flat.seconds / r.curve.seconds if r.flat and r.curve.seconds > 0 else 1.0 for r in own]
    return {
        "flat_stopped": len(stopped),
        "flat_time_share_median": statistics.median(shares) if own else None,
        "flat_kept": sum(f.kept for f in stopped) + len(own) - len(stopped),
    }


def curves_frame(repeats: Sequence[Repeat]) -> pd.DataFrame:
    """Every finished trial of every repeat: one row each, in the order they finished."""
    rows = [
        {"method": r.method, "seed": r.seed, "trial": p.trial, "seconds": p.seconds, "accuracy": p.accuracy,
         "best_so_far": p.best}
        for r in repeats
        for p in r.curve.points
    ]  # fmt: skip
    columns = ["method", "seed", "trial", "seconds", "accuracy", "best_so_far"]
    return pd.DataFrame(rows, columns=columns)


def summary_json(result: MethodsResult) -> dict[str, Any]:
    """What summary.json holds: the settings, the measuring machine, and each method's figures."""
    settings = {**asdict(result.settings), "methods": [m.name for m in result.settings.methods]}
    return {
        "settings": settings,
        "env": {**result.env, "mnist_bench": __version__, "date": datetime.now().isoformat(timespec="seconds")},
        "storage": result.storage,
        "studies": {r.study: r.method for r in result.repeats},
        "best_val_acc": result.best,
        "val_se": result.se,
        "methods": {s.method: {k: v for k, v in asdict(s).items() if k != "method"} for s in result.summaries},
    }


def write_methods(result: MethodsResult, out: Path) -> list[Path]:
    """The curves (CSV), the summary (JSON) and the figure (PNG) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    curves = out / CURVES_FILE
    curves_frame(result.repeats).to_csv(curves, index=False)
    summary = out / SUMMARY_FILE
    summary.write_text(json.dumps(summary_json(result), indent=2) + "\n")
    by_method = {m.name: [r.curve for r in result.repeats if r.method == m.name] for m in result.settings.methods}
    title = (
        f"{result.settings.repeats} seeded repeats, {result.settings.trials} trials of at most "
        f"{result.settings.epochs} epochs, on {result.env.get('device_name') or result.env.get('device')}"
    )
    figure = anytime_png(by_method, out / FIGURE_FILE, best=result.best, se=result.se, title=title)
    return [curves, summary, figure]
