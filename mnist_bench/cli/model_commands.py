"""Commands that make models: best, train, baselines."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from mnist_bench.artifacts.final import EpochDone, FinalData, TimeLeft, save_final, seeds_from, train_and_test
from mnist_bench.cli.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_STUDIES_DIR,
    MOMENTUM_TAKERS,
    WEIGHT_DECAYS,
    Augment,
    AugmentOpt,
    CompileOpt,
    DataDir,
    DeformOpt,
    Device,
    NoVerify,
    Optimizer,
    Precision,
    PrecisionOpt,
    RestartOpt,
    Schedule,
    Seeds,
    Steps,
    StepsOpt,
    Storage,
    StudiesDir,
    StudyName,
    app,
    deform_from,
    make_console,
    require_positive,
    runtime_from,
    study_options,
)
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.errors import MnistBenchError, UsageError
from mnist_bench.measure.baselines import BASELINES, Baseline, run_baselines
from mnist_bench.model import ModelConfig
from mnist_bench.output.console import (
    baselines_table,
    confusion_table,
    duration_text,
    key_value_table,
    leaderboard_table,
    per_class_table,
    plural,
    seeds_line,
    ties_line,
    trial_table,
)
from mnist_bench.search.leaderboard import leaderboard, study_dir, tied_at_top
from mnist_bench.search.loop import pick_trial, stored_space, trial_config, trial_precision, watched_val_size
from mnist_bench.search.records import StudyRecord, TrialRecord
from mnist_bench.search.study import DEFAULT_STUDY
from mnist_bench.storage.rdb import default_storage, load_study, open_storage
from mnist_bench.training.device import resolve_device


def _train_and_save(
    config: TrainConfig,
    *,
    seeds: int,
    out_dir: Path,
    source: dict[str, object],
    data_dir: Path,
    device: str,
    no_verify: bool,
    runtime: Runtime,
    restart: bool = False,
) -> None:
    """Shared by `best --retrain` and `train`: all 60,000 training images, then the test set once.

    Each seed's state is kept in ``out_dir/resume/`` after every epoch; an interrupted run
    started again goes on from there (``--restart``: from scratch).
    """
    seed_list = seeds_from(config.seed, seeds)
    data = FinalData.load(data_dir, resolve_device(device), verify=not no_verify)
    console = make_console()
    console.print(
        f"Training {config.model.layers} on all {len(data.train)} training images for {config.epochs} epoch(s), "
        f"{plural(len(seed_list), 'seed')}, on {data.device_data.device} in {runtime.precision}..."
    )
    source = {**source, "precision": runtime.precision}  # the checkpoint says how it was trained
    state_dir = out_dir / "resume"
    if restart:
        shutil.rmtree(state_dir, ignore_errors=True)

    time_left = TimeLeft(seed_list, config.epochs)

    def progress(done: EpochDone) -> None:
        what = "resumed after" if done.resumed else "epoch"
        left = time_left.update(done)
        console.print(
            f"seed {done.seed} {what} {done.epoch}/{done.epochs}: train loss {done.train_loss:.4f}, "
            f"{done.train_time_s:.1f} s" + ("" if left is None else f", {duration_text(left)} left"),
            markup=False,
        )

    try:
        report = train_and_test(
            config, data.device_data, seed_list, runtime=runtime, progress=progress, state_dir=state_dir
        )
    except KeyboardInterrupt:
        typer.echo(f"Interrupted: run the same command again to resume from the last epoch ({state_dir}).", err=True)
        raise typer.Exit(130) from None
    paths = save_final(report, data, out_dir, source=source)
    shutil.rmtree(state_dir, ignore_errors=True)  # the finished model is saved: nothing left to resume
    first = report.runs[0]
    console.print(
        key_value_table(
            {
                f"test accuracy (seed {first.result.config.seed})": f"{first.evaluation.accuracy:.4f}",
                "train time": f"{first.result.train_time_s:.1f} s",
                "samples/s": f"{first.result.samples_per_s:,.0f}",
            },
            title="Final evaluation on the 10,000 test images",
        )
    )
    console.print(per_class_table(first.evaluation.per_class, title="Accuracy per digit"))
    console.print(
        confusion_table(first.evaluation.confusion, title="Confusion matrix (rows: true, columns: predicted)")
    )
    if len(report.accuracies) > 1:  # one seed has one figure, printed above; a spread needs two
        console.print(seeds_line(report.accuracies, report.mean, report.std))
    if report.committee is not None:
        console.print(
            f"Committee of the {len(report.runs)} models (probabilities averaged): test accuracy "
            f"{report.committee:.4f}. A committee, not a single MLP: the figure above is the single-model one."
        )
    console.print("Saved " + ", ".join(str(p) for p in paths))


@app.command()
def best(
    study: StudyName = DEFAULT_STUDY,
    storage: Storage = None,
    trial: Annotated[
        int | None, typer.Option(help="Show (or retrain) this trial instead of the best.", show_default="the best")
    ] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Retrain on all 60,000 training images, test once, save a checkpoint.")
    ] = False,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs for --retrain.", show_default="as many as the trial ran")
    ] = None,
    seeds: Seeds = 1,
    augment: AugmentOpt = None,
    deform: DeformOpt = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            help="Matmul precision for --retrain.", show_default="the trial's where its space chose one, else fp32"
        ),
    ] = None,
    compile: CompileOpt = False,
    steps: StepsOpt = Steps["auto"],
    restart: RestartOpt = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
) -> None:
    """Show a study's best trial; with --retrain, turn it into a tested, saved model.

    --augment retrains with that augmentation instead of the trial's own."""
    require_positive("--epochs", epochs)
    require_positive("--seeds", seeds)
    optuna_study = load_study(study, open_storage(storage or default_storage(studies_dir), must_exist=True))
    ranked = pick_trial(optuna_study, trial)
    chosen = Precision(trial_precision(optuna_study, ranked.trial, "fp32")) if precision is None else precision
    # Seeds side by side (runtime.side_by_side); the self-check starts only for a retrain.
    runtime, _ = runtime_from(chosen, compile, [device], steps=steps, check=retrain)
    console = make_console()
    frame = leaderboard(optuna_study, stored_space(optuna_study))
    if len(optuna_study.directions) > 1:
        front = frame[frame["pareto"]]
        objectives = ", ".join(StudyRecord.of(optuna_study).objectives)
        title = f"Pareto-optimal trials ({objectives}): retrain any with --trial N --retrain"
        console.print(leaderboard_table(front, title=title))
    config = trial_config(optuna_study, ranked.trial, epochs=epochs)
    if augment is not None:
        config = replace(config, augment=augment.value)
    config = replace(config, deform=deform_from(deform, config.deform))
    console.print(
        trial_table(ranked, config, title=f"Study {study}: {'best trial' if trial is None else f'trial {trial}'}")
    )
    ties = tied_at_top(frame, watched_val_size(optuna_study))  # the study's, whichever trial is shown
    if ties is not None:
        console.print(ties_line(ties, study=study, options=study_options(storage, studies_dir)), markup=False)
    if retrain:
        source = {
            "command": "best --retrain",
            "study": study,
            "trial": ranked.trial.number,
            "val_acc": TrialRecord.of(ranked.trial).accuracy,
        }
        out_dir = study_dir(studies_dir, study) / f"trial-{ranked.trial.number}"
        _train_and_save(
            config,
            seeds=seeds,
            out_dir=out_dir,
            source=source,
            data_dir=data_dir,
            device=device,
            no_verify=no_verify,
            runtime=runtime,
            restart=restart,
        )


@app.command("train")
def train_cmd(
    layers: Annotated[
        str, typer.Option(help="Architecture, e.g. 784-1024-1024-10 (or just the hidden widths, 1024-1024).")
    ],
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer.")] = Optimizer["adam"],
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    momentum: Annotated[float, typer.Option(help=f"Momentum ({MOMENTUM_TAKERS} only).")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Images per optimizer step.")] = 128,
    epochs: Annotated[int, typer.Option(help="Passes over the 60,000 training images.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the (first) run: weight init and batch order.")] = 0,
    seeds: Seeds = 1,
    dropout: Annotated[float, typer.Option(help="Dropout after every hidden ReLU.")] = 0.0,
    weight_decay: Annotated[float, typer.Option(help=f"Weight decay ({WEIGHT_DECAYS}).")] = 0.0,
    schedule: Annotated[Schedule, typer.Option(help="Learning rate per step.")] = Schedule["constant"],
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy label smoothing.")] = 0.0,
    augment: AugmentOpt = None,
    deform: DeformOpt = None,
    max_norm: Annotated[
        float | None, typer.Option(help="Cap on each hidden unit's weight norm.", show_default="no cap")
    ] = None,
    precision: PrecisionOpt = Precision["fp32"],
    compile: CompileOpt = False,
    steps: StepsOpt = Steps["auto"],
    restart: RestartOpt = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder.", show_default="STUDIES_DIR/train/LAYERS-OPTIMIZER-lrLR-bsBATCH-eEPOCHS-sSEED"
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
) -> None:
    """Train one configuration on all training images, test it, save checkpoint and figures."""
    require_positive("--seeds", seeds)
    runtime, _ = runtime_from(precision, compile, [device], steps=steps)  # seeds side by side: runtime.side_by_side
    try:
        config = TrainConfig(
            replace(ModelConfig.parse(layers), dropout=dropout),
            optimizer.value,
            lr,
            momentum,
            batch_size=batch_size,
            epochs=epochs,
            seed=seed,
            weight_decay=weight_decay,
            schedule=schedule.value,
            label_smoothing=label_smoothing,
            augment=(augment or Augment["none"]).value,
            deform=deform_from(deform),
            max_norm=max_norm,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    name = f"{config.model.layers}-{config.optimizer}-lr{config.lr:g}-bs{config.batch_size}-e{config.epochs}-s{seed}"
    source: dict[str, object] = {"command": "train"}
    _train_and_save(
        config,
        seeds=seeds,
        out_dir=out or Path(studies_dir) / "train" / name,
        source=source,
        data_dir=data_dir,
        device=device,
        no_verify=no_verify,
        runtime=runtime,
        restart=restart,
    )


@app.command()
def baselines(
    seeds: Seeds = 3,
    study: Annotated[
        str | None,
        typer.Option(
            "--study", help="Add a row for this study's best trial, retrained the same way.", show_default="no row"
        ),
    ] = None,
    storage: Storage = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the table here as CSV too.", show_default="printed only")
    ] = None,
    steps: StepsOpt = Steps["auto"],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    device: Device = "auto",
    no_verify: NoVerify = False,
    studies_dir: StudiesDir = DEFAULT_STUDIES_DIR,
) -> None:
    """Train the five networks MNIST tutorials write by hand and compare with what they report."""
    require_positive("--seeds", seeds)
    runtime, _ = runtime_from(Precision["fp32"], False, [device], steps=steps)  # graphed, seeds side by side
    rows = list(BASELINES)
    if study is not None:
        optuna_study = load_study(study, open_storage(storage or default_storage(studies_dir), must_exist=True))
        ranked = pick_trial(optuna_study)
        config = trial_config(optuna_study, ranked.trial)
        rows.append(Baseline(f"{study} winner (trial {ranked.trial.number})", replace(config, seed=0), "-"))
    data = FinalData.load(data_dir, resolve_device(device), verify=not no_verify)
    frame = run_baselines(rows, data.device_data, list(range(seeds)), runtime=runtime)
    console = make_console()
    console.print(
        baselines_table(
            frame, title=f"Tutorial networks on the MNIST test set ({plural(seeds, 'seed')}, {data.device_data.device})"
        )
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        console.print(f"Written to {out}")


@app.command()
def deformations(
    augment: Annotated[Augment, typer.Option(help="The augmentation to draw.")] = Augment["elastic"],
    deform: DeformOpt = None,
    count: Annotated[int, typer.Option(help="Training digits shown (one column each).")] = 10,
    variants: Annotated[int, typer.Option(help="Deformed draws of each digit (one row each).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("deformations.png"),
    data_dir: DataDir = DEFAULT_DATA_DIR,
    no_verify: NoVerify = False,
) -> None:
    """Draw training digits as the augmentation deforms them: check strengths by eye before a long run."""
    from mnist_bench.artifacts.figures import deformations_png  # noqa: PLC0415
    from mnist_bench.augment import deformed_examples  # noqa: PLC0415
    from mnist_bench.data import ensure_split  # noqa: PLC0415

    require_positive("--count", count)
    require_positive("--variants", variants)
    strengths = deform_from(deform)
    split = ensure_split(data_dir, "train", verify=not no_verify)
    originals = split.images[: min(count, len(split))]
    drawn = deformed_examples(originals, augment.value, strengths, variants=variants, seed=seed)
    settings = ", ".join(f"{k}={v:g}" for k, v in dataclasses.asdict(strengths).items())
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        path = deformations_png(originals, drawn, out, title=f"{augment.value}: {settings}")
    except OSError as exc:
        raise MnistBenchError(f"cannot write {out}: {exc.strerror or exc}") from None
    make_console().print(f"Wrote {path}: {len(originals)} digits, {variants} {augment.value} draw(s) each")
