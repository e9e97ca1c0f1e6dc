"""The reference a search is measured against: the search users write by hand.

After Optuna's PyTorch example: per-sample transforms, a DataLoader, a host-to-device
copy per batch, a validation pass per epoch with report and prune. ``bench``'s search
section times it beside ``mnist-bench search``, the same way.
"""

from __future__ import annotations

import os
import time
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
