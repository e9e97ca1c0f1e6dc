from __future__ import annotations

import pytest
import torch

from mnist_bench.augment import augment_batch
from mnist_bench.data import DeviceData, normalize


def batch(tiny_data: DeviceData, n: int = 64) -> torch.Tensor:
    return tiny_data.x_train[:n]


@pytest.mark.parametrize("kind", ["affine", "elastic"])
def test_keeps_shape_dtype_device_and_changes_images(tiny_data: DeviceData, kind: str) -> None:
    x = batch(tiny_data)
    out = augment_batch(x, kind, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    changed = (out - x).abs().amax(dim=1) > 0.5
    assert changed.float().mean() > 0.9  # (nearly) every image moved
    # Ink is moved, not invented: total brightness above the background stays close.
    background = normalize(torch.zeros(1, 28, 28, dtype=torch.uint8)).min()
    assert (out - background).sum().item() == pytest.approx((x - background).sum().item(), rel=0.2)


@pytest.mark.parametrize("kind", ["affine", "elastic"])
def test_fixed_seed_same_batch(tiny_data: DeviceData, kind: str) -> None:
    x = batch(tiny_data)
    a = augment_batch(x, kind, torch.Generator().manual_seed(3))
    b = augment_batch(x, kind, torch.Generator().manual_seed(3))
    c = augment_batch(x, kind, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_none_is_identity_and_unknown_rejected(tiny_data: DeviceData) -> None:
    x = batch(tiny_data)
    assert augment_batch(x, "none", torch.Generator()) is x
    with pytest.raises(ValueError, match="augment='warp'"):
        augment_batch(x, "warp", torch.Generator())


def test_empty_image_stays_empty() -> None:
    # Background pixels map to background: padding must not bring ink in from the border.
    blank = normalize(torch.zeros(4, 28, 28, dtype=torch.uint8))
    out = augment_batch(blank, "elastic", torch.Generator().manual_seed(0))
    assert torch.allclose(out, blank, atol=1e-5)


def test_labels_untouched_by_training_with_augmentation(tiny_data: DeviceData) -> None:
    from mnist_bench.model import ModelConfig
    from mnist_bench.train import TrainConfig, train

    before = tiny_data.y_train.clone()
    config = TrainConfig(ModelConfig((64,)), "adam", 3e-3, batch_size=32, epochs=4, augment="affine")
    result = train(config, tiny_data)
    assert torch.equal(tiny_data.y_train, before)
    assert result.best_acc > 0.5  # still learns the (shifted) patches
