from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from mnist_bench.cli import app
from mnist_bench.search.space import shipped_spaces
from mnist_bench.storage.rdb import default_storage

runner = CliRunner()


def search_args(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    (tmp_path / "small.toml").write_text("depth = [1, 2]\nwidth = [8, 64]\nbatch_sizes = [32, 64]\n")
    return [
        "search", "--trials", "3", "--epochs", "2", "--seed", "0", "--val-size", "100",
        "--space", str(tmp_path / "small.toml"), "--data-dir", str(data), "--no-verify",
        "--studies-dir", str(tmp_path / "studies"), "--device", "cpu", *extra,
    ]  # fmt: skip


def test_search_prints_trials_and_leaderboard_and_writes_files(tmp_path: Path, tiny_mnist: Path) -> None:
    result = runner.invoke(app, search_args(tmp_path, tiny_mnist))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("trial ") >= 3 and "Top 3 of study mnist-mlp" in out
    assert "now holds 3 trials (3 complete, 0 pruned, 0 failed); 3/3 finished" in out
    folder = tmp_path / "studies" / "mnist-mlp"
    assert (folder / "leaderboard.csv").is_file() and (folder / "leaderboard.md").is_file()
    assert (tmp_path / "studies" / "mnist-bench.db").is_file()

    rerun = runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "4"))
    assert rerun.exit_code == 0 and "Ran 1 trial(s)" in rerun.stdout and "4/4 finished" in rerun.stdout


def test_leaderboard_formats(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist)).exit_code == 0
    common = ["leaderboard", "--studies-dir", str(tmp_path / "studies")]
    as_json = runner.invoke(app, [*common, "--format", "json", "--top", "2"])
    assert as_json.exit_code == 0 and len(json.loads(as_json.stdout)) == 2
    as_csv = runner.invoke(app, [*common, "-f", "csv"])
    assert as_csv.stdout.splitlines()[0].startswith("rank,trial,state,layers")
    as_table = runner.invoke(app, common)
    assert as_table.exit_code == 0 and "Study mnist-mlp: 3 trials" in as_table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "0"], "--trials 0"),
        (["--epochs", "0"], "--epochs 0"),
        (["--pruner", "sometimes"], "'sometimes' is not one of"),
        (["--sampler", "grid"], "'grid' is not one of"),
        (["--storage", "nonsense"], "is not a URL"),
        (["--storage", "postgresql://u@127.0.0.1:1/db"], "cannot open storage postgresql://u@127.0.0.1:1/db"),
        (["--device", "tpu"], "device 'tpu'"),
        (["--space", "nowhere"], "search space 'nowhere' is not a shipped space (default, extended,"),
        (["--space", "nowhere.toml"], "search space file nowhere.toml not found"),
        (["--trials", "many"], "Invalid value for '--trials'"),
    ],
)
def test_bad_search_input_is_one_line_and_nonzero(
    tmp_path: Path, tiny_mnist: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, search_args(tmp_path, tiny_mnist, *args))
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_spaces_lists_each_shipped_space_on_one_line() -> None:
    result = runner.invoke(app, ["spaces"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    shipped = shipped_spaces()
    assert len(shipped) >= 10 and len(lines) == len(shipped) + 1  # and one line on how to use them
    for space, line in zip(shipped, lines, strict=False):
        assert line.split()[0] == space.name and line.endswith(space.description)
    assert "frontier-cpu " in result.stdout and "base = " in lines[-1]


def test_search_finds_a_shipped_space_from_any_folder(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no studies/ here: the space comes from the package
    (tmp_path / "mine.toml").write_text('base = "default"\ndepth = [1, 1]\nwidth = [8, 16]\n')
    args = ["search", "--trials", "1", "--epochs", "1", "--val-size", "100", "--data-dir", str(tiny_mnist),
            "--no-verify", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, [*args, "--space", "mine.toml"])
    assert result.exit_code == 0, result.output
    assert "1/1 finished" in result.stdout and (tmp_path / "studies" / "mnist-bench.db").is_file()
    stored = optuna.load_study(study_name="mnist-mlp", storage=f"sqlite:///{tmp_path / 'studies' / 'mnist-bench.db'}")
    assert stored.user_attrs["space"]["depth"] == [1, 1] and stored.user_attrs["space"]["optimizers"] == ["sgd", "adam"]


def test_corrupt_data_names_the_file(tmp_path: Path, tiny_mnist: Path) -> None:
    path = tiny_mnist / "MNIST/raw/train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    result = runner.invoke(app, search_args(tmp_path, tiny_mnist))
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte.gz is truncated" in result.stderr and result.stderr.count("\n") == 1


def test_a_failed_start_leaves_no_study_and_an_old_one_as_it_was(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--study", "kept")).exit_code == 0
    studies = f"sqlite:///{tmp_path / 'studies' / 'mnist-bench.db'}"
    before = optuna.load_study(study_name="kept", storage=studies).trials
    path = tiny_mnist / "MNIST/raw/train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    for name in ("kept", "fresh"):
        result = runner.invoke(app, search_args(tmp_path, tiny_mnist, "--study", name, "--trials", "5"))
        assert result.exit_code == 1 and "is truncated" in result.stderr
    assert [s.study_name for s in optuna.get_all_study_summaries(studies)] == ["kept"]
    assert optuna.load_study(study_name="kept", storage=studies).trials == before


def test_unverified_toy_data_fails_the_checksum(tmp_path: Path, tiny_mnist: Path) -> None:
    args = [a for a in search_args(tmp_path, tiny_mnist) if a != "--no-verify"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "is corrupted: sha256" in result.stderr


def test_leaderboard_of_unknown_study_lists_known_ones(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist)).exit_code == 0
    result = runner.invoke(app, ["leaderboard", "--study", "nope", "--studies-dir", str(tmp_path / "studies")])
    assert result.exit_code == 1 and "studies there: mnist-mlp" in result.stderr


def test_leaderboard_without_storage_does_not_create_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["leaderboard", "--studies-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no study storage" in result.stderr
    assert not (tmp_path / "mnist-bench.db").exists()


@pytest.mark.parametrize("command", [[], ["search"], ["leaderboard"]])
def test_help_shows_options_with_defaults(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    if command == ["search"]:
        assert "--trials" in result.stdout and "[default: 50]" in result.stdout


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "mnist_bench", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("mnist-bench ")


def test_stored_study_carries_params_and_attributes(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist)).exit_code == 0
    url = f"sqlite:///{(tmp_path / 'studies' / 'mnist-bench.db').resolve()}"
    study = optuna.load_study(study_name="mnist-mlp", storage=url)
    best = study.best_trial
    assert best.params["n_layers"] in (1, 2)
    assert {"epochs_run", "train_time_s", "samples_per_s", "final_val_acc", "best_val_acc"} <= set(best.user_attrs)


@pytest.mark.slow
def test_real_mnist_short_search_beats_95_percent(tmp_path: Path, real_mnist: Path) -> None:
    # A short search on the real data, on the CPU: the default space finds a net above 95% in an epoch.
    args = ["search", "--trials", "4", "--epochs", "1", "--seed", "0", "--data-dir", str(real_mnist)]
    result = runner.invoke(app, [*args, "--studies-dir", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="mnist-mlp", storage=f"sqlite:///{tmp_path / 'mnist-bench.db'}")
    assert len(study.trials) == 4 and study.best_value > 0.95
    assert (tmp_path / "mnist-mlp" / "leaderboard.csv").is_file()


def studied(tmp_path: Path, tiny_mnist: Path) -> list[str]:
    """Run a tiny search; return the options that point later commands at it."""
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist)).exit_code == 0
    return ["--studies-dir", str(tmp_path / "studies"), "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]


def test_best_shows_the_winner(tmp_path: Path, tiny_mnist: Path) -> None:
    common = studied(tmp_path, tiny_mnist)
    result = runner.invoke(app, ["best", *common])
    assert result.exit_code == 0, result.output
    assert "rank" in result.stdout and "of 3 complete trials" in result.stdout


def test_best_retrain_saves_a_checkpoint_that_a_fresh_process_reproduces(tmp_path: Path, tiny_mnist: Path) -> None:
    common = studied(tmp_path, tiny_mnist)
    result = runner.invoke(app, ["best", "--retrain", "--seeds", "2", "--epochs", "2", *common])
    assert result.exit_code == 0, result.output
    assert "Confusion matrix" in result.stdout and "over 2 seeds:" in result.stdout and " ± " in result.stdout
    best = optuna.load_study(
        study_name="mnist-mlp", storage=f"sqlite:///{(tmp_path / 'studies' / 'mnist-bench.db').resolve()}"
    ).best_trial
    folder = tmp_path / "studies" / "mnist-mlp" / f"trial-{best.number}"
    for name in ("checkpoint.json", "model.pt", "confusion.png", "predictions.png"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["source"]["trial"] == best.number and meta["seed"] == best.user_attrs["train_seed"]
    assert meta["config"]["epochs"] == 2 and len(meta["seeds"]["test_accuracy"]) == 2
    assert set(meta["data_sha256"]) == {
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    }
    assert {"torch", "optuna", "mnist_bench"} <= set(meta["versions"])
    fresh = subprocess.run(
        [sys.executable, "-m", "mnist_bench", "evaluate", str(folder), "--data-dir", str(tiny_mnist), "--no-verify"],
        capture_output=True,
        text=True,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert f"test accuracy {meta['test']['accuracy']:.4f}" in fresh.stdout


def test_best_without_complete_trials_says_so(tmp_path: Path, tiny_mnist: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    optuna.create_study(study_name="empty", storage=storage)
    result = runner.invoke(app, ["best", "--study", "empty", "--storage", storage])
    assert result.exit_code == 1 and "has no complete trial yet" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["best", "--seeds", "0"], "--seeds 0"),
        (["best", "--epochs", "0"], "--epochs 0"),
        (["train", "--layers", "784-64-10", "--epochs", "0"], "epochs=0"),
        (["train", "--layers", "784-64-10", "--seeds", "0"], "--seeds 0"),
        (["train", "--layers", "big"], "layers 'big'"),
        (["train", "--layers", "64", "--optimizer", "adam", "--momentum", "0.9"], "applies to sgd only"),
        (["baselines", "--seeds", "0"], "--seeds 0"),
    ],
)
def test_bad_final_training_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--studies-dir", str(tmp_path)])
    assert result.exit_code != 0 and message in result.stderr and result.stderr.count("\n") == 1


def test_train_writes_outputs(tmp_path: Path, tiny_mnist: Path) -> None:
    args = ["train", "--layers", "784-32-10", "--epochs", "2", "--batch-size", "32", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "checkpoint.json",
        "model.pt",
        "confusion.png",
        "predictions.png",
    }


def test_baselines_prints_every_row_and_the_study_winner(tmp_path: Path, tiny_mnist: Path) -> None:
    common = studied(tmp_path, tiny_mnist)
    result = runner.invoke(
        app, ["baselines", "--seeds", "1", "--study", "mnist-mlp", "--out", str(tmp_path / "b.csv"), *common]
    )
    assert result.exit_code == 0, result.output
    for name in ("784-128-64-10 SGD", "784-128-10 Adam", "784-500-10 Adam", "784-256-128-64-32-10", "mnist-mlp winner"):
        assert name in result.stdout
    rows = (tmp_path / "b.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and "97.83%" in rows[2]


def test_predict_json_and_bad_files(tmp_path: Path, tiny_mnist: Path) -> None:
    from PIL import Image

    from mnist_bench.data import load_split

    args = [
        "train",
        "--layers",
        "32",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--lr",
        "0.003",
        "--out",
        str(tmp_path / "m"),
    ]
    trained = runner.invoke(app, [*args, "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"])
    assert trained.exit_code == 0
    assert "test accuracy (seed 0)" in trained.stdout and "±" not in trained.stdout  # one seed, one figure
    test = load_split(tiny_mnist, "test", verify=False)
    Image.fromarray(test.images[0].numpy()).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_text("nope")
    Image.new("L", (28, 28), 255).save(tmp_path / "white.png")
    files = [str(tmp_path / name) for name in ("a.png", "bad.png", "white.png")]
    result = runner.invoke(app, ["predict", str(tmp_path / "m"), *files, "--json"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: 2 of 3 image(s) not classified: 1 could not be read (")
    assert "1 held no digit (" in result.stderr and result.stderr.count("\n") == 1
    rows = json.loads(result.stdout)
    assert rows[0]["label"] == int(test.labels[0]) and "error" in rows[1]
    assert rows[2] == {"file": files[2], "label": None, "note": "no digit found (blank image)"}
    table = runner.invoke(app, ["predict", str(tmp_path / "m"), *files], terminal_width=200)
    assert "no digit found (blank image)" in table.stdout and "cannot decode image" in table.stdout
    missing = runner.invoke(app, ["predict", str(tmp_path / "nowhere"), str(tmp_path / "a.png")])
    assert missing.exit_code == 1 and "no checkpoint at" in missing.stderr


@pytest.mark.slow
def test_real_mnist_mlp_learns_and_its_png_predictions_return_their_labels(tmp_path: Path, real_mnist: Path) -> None:
    from PIL import Image

    from mnist_bench.data import load_split

    args = ["train", "--layers", "784-256-10", "--epochs", "3", "--out", str(tmp_path / "m")]
    assert runner.invoke(app, [*args, "--data-dir", str(real_mnist), "--device", "cpu"]).exit_code == 0
    # Real accuracy on the real test set (0.9698 at seed 0): a broken trainer lands far below.
    assert json.loads((tmp_path / "m" / "checkpoint.json").read_text())["test"]["accuracy"] >= 0.96
    test = load_split(real_mnist, "test")
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(test.images[i].numpy()).save(paths[-1])
    result = runner.invoke(app, ["predict", str(tmp_path / "m"), *map(str, paths), "--json"])
    assert [row["label"] for row in json.loads(result.stdout)] == test.labels[:5].tolist()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dropout", "-0.1"], "dropout=-0.1"),
        (["--dropout", "1"], "dropout=1.0"),
        (["--schedule", "warmup"], "'warmup' is not one of"),
        (["--augment", "twist"], "'twist' is not one of"),
        (["--label-smoothing", "1.5"], "label_smoothing=1.5"),
    ],
)
def test_bad_regularizers_rejected_before_training(tmp_path: Path, extra: list[str], message: str) -> None:
    # No data dir is given: the error must come before any data is read.
    result = runner.invoke(app, ["train", "--layers", "64", *extra, "--data-dir", str(tmp_path / "none")])
    assert result.exit_code != 0 and message in result.stderr and result.stderr.count("\n") == 1


def test_extended_space_search_and_augmented_retrain(tmp_path: Path, tiny_mnist: Path) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    # The extended space, narrowed to small widths so that the tiny run stays quick.
    (tmp_path / "ext.toml").write_text('base = "extended"\nwidth = [8, 32]\n')
    common = ["--studies-dir", str(studies), "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    space = str(tmp_path / "ext.toml")
    args = ["search", "--space", space, "--trials", "4", "--epochs", "2", "--seed", "0", "--val-size", "100"]
    result = runner.invoke(app, [*args, *common])
    assert result.exit_code == 0, result.output
    csv = (studies / "mnist-mlp" / "leaderboard.csv").read_text()
    assert "schedule" in csv.splitlines()[0] and "augment" in csv.splitlines()[0]
    retrain = runner.invoke(app, ["best", "--retrain", "--augment", "elastic", "--epochs", "1", *common])
    assert retrain.exit_code == 0, retrain.output
    folder = next((studies / "mnist-mlp").glob("trial-*"))
    assert json.loads((folder / "checkpoint.json").read_text())["config"]["augment"] == "elastic"


def test_a_study_of_other_random_streams_resumes_only_with_mixed_versions(
    tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_bench import STREAMS_VERSION
    from mnist_bench.search import records, study
    from mnist_bench.storage.rdb import default_storage

    with monkeypatch.context() as patched:  # the study made by a version with other streams
        for module in (records, study):
            patched.setattr(module, "STREAMS_VERSION", "0.1.9")
        assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "2")).exit_code == 0
    stored = optuna.load_study(study_name="mnist-mlp", storage=default_storage(tmp_path / "studies"))
    assert stored.user_attrs["streams_version"] == "0.1.9"
    assert [t.user_attrs["streams_version"] for t in stored.trials] == ["0.1.9", "0.1.9"]

    refused = runner.invoke(app, search_args(tmp_path, tiny_mnist))
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("Error: ")
    assert f"random streams of mnist-bench 0.1.9, this version's are {STREAMS_VERSION}" in refused.stderr
    assert "--mixed-versions" in refused.stderr
    assert len(optuna.load_study(study_name="mnist-mlp", storage=default_storage(tmp_path / "studies")).trials) == 2

    mixed = runner.invoke(app, search_args(tmp_path, tiny_mnist, "--mixed-versions"))
    assert mixed.exit_code == 0, mixed.output
    assert "3/3 finished" in mixed.stdout
    common = ["leaderboard", "--studies-dir", str(tmp_path / "studies")]
    table = runner.invoke(app, common).stdout
    assert "streams" in table and "0.1.9" in table and STREAMS_VERSION in table
    rows = json.loads(runner.invoke(app, [*common, "--format", "json"]).stdout)
    assert sorted(row["streams"] for row in rows) == ["0.1.9", "0.1.9", STREAMS_VERSION]
    # The study keeps the version it was made with: the next resume needs the option again.
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "4")).exit_code == 1


def test_the_leaderboard_of_one_version_has_no_streams_column(tmp_path: Path, tiny_mnist: Path) -> None:
    assert runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "1")).exit_code == 0
    common = ["leaderboard", "--studies-dir", str(tmp_path / "studies")]
    assert "streams" not in runner.invoke(app, common).stdout
    assert "streams" in runner.invoke(app, [*common, "-f", "csv"]).stdout.splitlines()[0]


def test_storage_comes_from_the_environment_when_not_given(tmp_path: Path, tiny_mnist: Path) -> None:
    """MNIST_BENCH_STORAGE stands for --storage in every command that takes it, so a
    database password need not sit on a command line; --storage still wins."""
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    env = {"MNIST_BENCH_STORAGE": url}
    result = runner.invoke(app, search_args(tmp_path, tiny_mnist, "--trials", "1"), env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "studies" / "mnist-bench.db").exists()
    listed = runner.invoke(app, ["leaderboard", "--studies-dir", str(tmp_path / "studies"), "-f", "csv"], env=env)
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 2, listed.output
    nonsense = {"MNIST_BENCH_STORAGE": "nonsense"}
    bad = runner.invoke(app, ["leaderboard", "--studies-dir", str(tmp_path)], env=nonsense)
    assert bad.exit_code == 2 and "is not a URL" in bad.stderr and bad.stderr.count("\n") == 1, bad.output
    given = runner.invoke(app, ["leaderboard", "--storage", url, "--studies-dir", str(tmp_path)], env=nonsense)
    assert given.exit_code == 0, given.output


def test_stop_when_flat_says_why_it_stopped_and_a_rerun_trains_nothing(tmp_path: Path, tiny_mnist: Path) -> None:
    args = search_args(tmp_path, tiny_mnist, "--trials", "40", "--epochs", "1", "--stop-when-flat")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # rich wraps long lines at the console's width
    assert "target 40 finished at most, fewer once the best is flat" in out
    stopped = re.search(r"Stopped after (\d+) finished trials \(--stop-when-flat\): the best \(\S+ ± \S+, trial", out)
    assert stopped is not None and int(stopped[1]) < 40 and f"{stopped[1]}/40 finished" in out
    assert re.search(r"\(patience 10 = max\(10, 0.5 × \d+ finished trials up to trial \d+\)\)", out)
    assert "has not moved beyond the validation's noise since trial" in out
    assert "Run the same command again" not in out
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0 and "Ran 0 trial(s)" in rerun.stdout and "Stopped after" in rerun.stdout


def test_best_names_the_trials_tied_with_it_and_how_to_tell_them_apart(tmp_path: Path, tiny_mnist: Path) -> None:
    """On 100 validation images the tiny data's first trials reach the same accuracy: tied."""
    common = studied(tmp_path, tiny_mnist)
    result = runner.invoke(app, ["best", *common])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    tied = re.search(r"(\d+) trials? (?:is|are) tied with the best \(trial \d+\) within the validation's noise", out)
    assert tied is not None, out
    # The command it prints finds the study where this one did: the same --studies-dir.
    command = re.search(r"mnist-bench (promote --study mnist-mlp --best \d+ --studies-dir \S+)", out)
    assert command is not None, out
    promoted = runner.invoke(app, [*command.group(1).split(), "--epochs", "1", *common])
    assert promoted.exit_code == 0, promoted.output


def test_stop_when_flat_with_several_objectives_is_one_line(tmp_path: Path, tiny_mnist: Path) -> None:
    args = search_args(tmp_path, tiny_mnist, "--objective", "accuracy,latency", "--stop-when-flat")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "--stop-when-flat: watches the best accuracy of one objective" in result.stderr


def test_speed_space_search_draws_epochs_and_precision_and_retrains_the_trials_own(
    tmp_path: Path, tiny_mnist: Path
) -> None:
    studies = tmp_path / "studies"
    # The speed space, narrowed to small widths and few epochs so that the tiny run stays quick.
    (tmp_path / "fast.toml").write_text('base = "speed"\nwidth = [8, 32]\nepochs = [1, 3]\n')
    common = ["--studies-dir", str(studies), "--data-dir", str(tiny_mnist), "--no-verify", "--device", "cpu"]
    args = ["search", "--space", str(tmp_path / "fast.toml"), "--trials", "6", "--seed", "1", "--val-size", "100"]
    refused = runner.invoke(app, [*args, "--epochs", "4", *common])
    assert refused.exit_code == 2 and "searches each trial's epochs (1-3); leave it out" in refused.output
    result = runner.invoke(app, [*args, "--objective", "accuracy,time", "--pruner", "none", *common])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="mnist-mlp", storage=default_storage(studies))
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len({t.params["epochs"] for t in trials}) > 1 and len({t.params["precision"] for t in trials}) > 1
    for t in trials:  # each trained the epochs it drew, and its time is an objective beside its accuracy
        assert t.user_attrs["epochs_run"] == t.params["epochs"] and t.values[1] > 0
    chosen = next(t for t in trials if t.params["precision"] == "bf16")
    retrain = runner.invoke(app, ["best", "--retrain", "--trial", str(chosen.number), *common])
    assert retrain.exit_code == 0, retrain.output
    saved = json.loads((studies / "mnist-mlp" / f"trial-{chosen.number}" / "checkpoint.json").read_text())
    assert saved["config"]["epochs"] == chosen.params["epochs"]
    assert "in bf16..." in retrain.output and saved["source"]["precision"] == "bf16"  # the trial's own precision
    promoted = runner.invoke(app, ["promote", "--best", "2", "--epochs", "4", *common])
    assert promoted.exit_code == 2 and "each of its trials drew its own epochs" in promoted.output
