from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mnist_bench.artifacts.final import EpochDone, evaluate, seeds_from, train_and_test
from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import MnistBenchError
from mnist_bench.model import ModelConfig
from mnist_bench.training.trainer import train

CONFIG = TrainConfig(ModelConfig((32,)), "adam", 3e-3, batch_size=32, epochs=3)


def test_evaluation_counts_add_up(tiny_data: DeviceData) -> None:
    report = train_and_test(CONFIG, tiny_data, [0])
    ev = report.runs[0].evaluation
    confusion = torch.tensor(ev.confusion)
    assert confusion.sum() == len(tiny_data.y_eval)
    assert torch.equal(confusion.sum(1), torch.bincount(tiny_data.y_eval, minlength=10))
    assert ev.accuracy == pytest.approx(confusion.diag().sum().item() / len(tiny_data.y_eval))
    assert ev.accuracy > 0.8
    for digit, acc in enumerate(ev.per_class):
        if confusion[digit].sum():
            assert acc == pytest.approx(confusion[digit, digit].item() / confusion[digit].sum().item())


def test_seeds_give_mean_and_spread(tiny_data: DeviceData) -> None:
    report = train_and_test(CONFIG, tiny_data, seeds_from(5, 3))
    assert [run.result.config.seed for run in report.runs] == [5, 6, 7]
    assert report.mean == pytest.approx(sum(report.accuracies) / 3)
    assert report.std >= 0
    # Final training does not look at the evaluation images between epochs.
    assert all(run.result.val_accs == () for run in report.runs)
    assert report.runs[0].result.epochs_run == 3
    # Each seed trains what it would alone (on a GPU the seeds train side by side).
    for run in report.runs:
        alone = train(run.result.config, tiny_data, score_epochs=False)
        assert alone.train_loss == run.result.train_loss


def test_zero_seeds_rejected() -> None:
    with pytest.raises(MnistBenchError, match="--seeds 0"):
        seeds_from(0, 0)


def test_evaluate_matches_argmax(tiny_data: DeviceData) -> None:
    model = train_and_test(CONFIG, tiny_data, [0]).runs[0].result.model
    ev = evaluate(model, tiny_data.x_eval, tiny_data.y_eval)
    with torch.no_grad():
        assert torch.equal(ev.predictions, model(tiny_data.x_eval).argmax(1))


LONG = TrainConfig(ModelConfig((24,), dropout=0.1), "sgd", 0.05, momentum=0.9, batch_size=32, epochs=4,
                   schedule="exponential", augment="affine")  # fmt: skip


def test_an_interrupted_run_resumes_from_its_last_epoch(tmp_path: Path, tiny_data: DeviceData) -> None:
    tmp_path = tmp_path / "resume"
    whole = train_and_test(LONG, tiny_data, [0, 1])
    seen: list[tuple[int, int, bool]] = []

    def interrupt_after_epoch_2(done: EpochDone) -> None:
        seen.append((done.seed, done.epoch, done.resumed))
        if done.seed == 1 and done.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_and_test(LONG, tiny_data, [0, 1], progress=interrupt_after_epoch_2, state_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed-0.pt", "seed-1.pt"]
    seen.clear()
    resumed = train_and_test(LONG, tiny_data, [0, 1], progress=lambda d: seen.append((d.seed, d.epoch, d.resumed)),
                             state_dir=tmp_path)  # fmt: skip
    # Seed 0 had finished: picked up whole, its last epoch not trained again.
    assert (0, 4, True) in seen and (0, 4, False) not in seen
    assert (1, 2, True) in seen and (1, 1, False) not in seen and (1, 4, False) in seen
    for a, b in zip(whole.runs, resumed.runs, strict=True):
        assert a.result.train_loss == b.result.train_loss
        for p, q in zip(a.result.model.parameters(), b.result.model.parameters(), strict=True):
            assert torch.equal(p, q)
    assert whole.committee is not None and 0 <= whole.committee <= 1


def test_resuming_another_configuration_is_refused(tmp_path: Path, tiny_data: DeviceData) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_and_test(LONG, tiny_data, [0], progress=lambda d: (_ for _ in ()).throw(KeyboardInterrupt()),
                       state_dir=tmp_path)  # fmt: skip
    with pytest.raises(MnistBenchError, match="another configuration; pass --restart"):
        train_and_test(replace(LONG, lr=0.01), tiny_data, [0], state_dir=tmp_path)
