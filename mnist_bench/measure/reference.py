"""The two searches ``bench``'s search section times, the same way: ``mnist-bench search``
itself (``search_throughput``), and the reference it is measured against, the search
users write by hand (``hand_written_search``).

The reference follows Optuna's PyTorch example: per-sample transforms, a DataLoader, a
host-to-device copy per batch, a validation pass per epoch with report and prune.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mnist_bench.data import MnistSplit


def hand_written_search(split: MnistSplit, device: torch.device, *, trials: int, epochs: int) -> dict[str, Any]:
    """The reference: what users write by hand, after Optuna's PyTorch example, timed the same way.

    Per-sample PIL image, ToTensor and Normalize (``bench.ClassicDataset``), a shuffled
    DataLoader with worker processes, a host-to-device copy per batch, a validation pass
    per epoch with ``trial.report`` and pruning (median pruner), the same depth, width,
    optimizer, learning-rate, momentum and batch-size ranges, a 55,000/5,000 split.
    """
    import optuna  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415
    from torch.utils.data import DataLoader, Subset  # noqa: PLC0415

    from mnist_bench.data import validation_indices  # noqa: PLC0415
    from mnist_bench.measure.bench import ClassicDataset  # noqa: PLC0415

    n_val = min(5000, len(split) // 10 or 1)
    train_idx, val_idx = validation_indices(len(split), n_val)
    dataset = ClassicDataset(split)
    loader_workers = min(4, max(0, (os.cpu_count() or 1) - 1))

    def objective(trial: optuna.Trial) -> float:
        layers: list[nn.Module] = []
        width_in = 784
        for i in range(trial.suggest_int("n_layers", 1, 4)):
            width = trial.suggest_int(f"width_{i}", 32, 1024, log=True)
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            width_in = width
        model = nn.Sequential(*layers, nn.Linear(width_in, 10)).to(device)
        name = trial.suggest_categorical("optimizer", ["sgd", "adam"])
        if name == "sgd":
            lr = trial.suggest_float("sgd_lr", 1e-3, 0.3, log=True)
            momentum = trial.suggest_float("sgd_momentum", 0.5, 0.99)
            optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=trial.suggest_float("adam_lr", 1e-4, 1e-2, log=True))
        batch_size = trial.suggest_categorical("batch_size", [32, 64, 128, 256, 512])
        train_loader = DataLoader(Subset(dataset, train_idx.tolist()), batch_size=batch_size, shuffle=True,
                                  num_workers=loader_workers)  # fmt: skip
        val_loader = DataLoader(Subset(dataset, val_idx.tolist()), batch_size=1000, num_workers=loader_workers)
        accuracy = 0.0
        for epoch in range(epochs):
            model.train()
            for images, labels in train_loader:
                images, labels = images.view(images.shape[0], -1).to(device), labels.to(device)
                optimizer.zero_grad()
                F.cross_entropy(model(images), labels).backward()
                optimizer.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for images, labels in val_loader:
                    predicted = model(images.view(images.shape[0], -1).to(device)).argmax(1)
                    correct += int((predicted.cpu() == labels).sum())
            accuracy = correct / len(val_idx)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.MedianPruner())  # fmt: skip
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - start
    return {"trials": trials, "wall_s": wall, "trials_per_min": trials / wall * 60}


def search_throughput(
    workers: int,
    parallel: int = 1,
    *,
    device: str,
    data_dir: Path,
    verify: bool,
    trials: int,
    epochs: int,
) -> dict[str, Any]:
    """Wall-clock of a fresh default-space study (median pruner), as ``search --workers W --parallel K`` runs it.

    Data load included: each worker process loads its own copy, as the command does.
    """
    from mnist_bench.search.loop import open_study  # noqa: PLC0415
    from mnist_bench.search.records import TrialRecord  # noqa: PLC0415
    from mnist_bench.search.space import SearchSpace  # noqa: PLC0415
    from mnist_bench.search.study import SearchSettings  # noqa: PLC0415
    from mnist_bench.search.workers import WorkerJob, run_workers  # noqa: PLC0415
    from mnist_bench.storage.rdb import open_storage  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = SearchSettings(
            study="bench", storage=storage, trials=trials, epochs=epochs, seed=0, parallel=parallel
        )
        space = SearchSpace()
        study = open_study(settings, space, open_storage(storage))
        start = time.perf_counter()
        run_workers(WorkerJob(settings, space, data_dir, verify, (device,) * workers), study)
        wall = time.perf_counter() - start
        records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]
        trained = [
            r.samples_per_s * r.train_time_s
            for r in records
            if r.samples_per_s is not None and r.train_time_s is not None
        ]
        samples = sum(trained)
    return {
        "trials": len(trained),
        "wall_s": wall,
        "trials_per_min": len(trained) / wall * 60,
        "aggregate_samples_per_s": samples / wall,
    }
