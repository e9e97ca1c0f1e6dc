from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mnist_bench.augment import (
    Augmenter,
    Deform,
    _gaussian_kernel,
    augment_batch,
    blur_matrix,
    deformed_examples,
    parse_deform,
)
from mnist_bench.cli import app
from mnist_bench.config import Runtime, TrainConfig
from mnist_bench.data import DeviceData, normalize
from mnist_bench.model import ModelConfig
from mnist_bench.training.trainer import Training


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
    from mnist_bench.config import TrainConfig
    from mnist_bench.model import ModelConfig
    from mnist_bench.training.trainer import train

    before = tiny_data.y_train.clone()
    config = TrainConfig(ModelConfig((64,)), "adam", 3e-3, batch_size=32, epochs=4, augment="affine")
    result = train(config, tiny_data)
    assert torch.equal(tiny_data.y_train, before)
    assert result.best_acc > 0.5  # still learns the (shifted) patches


def test_default_strengths_draw_as_before(tiny_data: DeviceData) -> None:
    # Shear 0 draws nothing extra: studies made before strengths existed train the same.
    x = batch(tiny_data)
    a = augment_batch(x, "elastic", torch.Generator().manual_seed(5))
    b = augment_batch(x, "elastic", torch.Generator().manual_seed(5), Deform())
    assert torch.equal(a, b)
    sheared = augment_batch(x, "elastic", torch.Generator().manual_seed(5), Deform(shear_deg=15))
    assert not torch.equal(a, sheared)


def test_zero_strengths_leave_images_alone(tiny_data: DeviceData) -> None:
    x = batch(tiny_data)
    still = Deform(rotate_deg=0, scale=0, shear_deg=0, shift_px=0, elastic_alpha_px=0)
    out = augment_batch(x, "elastic", torch.Generator().manual_seed(0), still)
    torch.testing.assert_close(out, x, atol=1e-4, rtol=0)


@pytest.mark.parametrize("sigma", [0.5, 4.0, 5.0, 9.0])
def test_blur_matrix_is_the_reflect_padded_convolution(sigma: float) -> None:
    # The matrix must blur exactly as padding by reflection and convolving would.
    field = torch.rand(3, 2, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kernel = _gaussian_kernel(sigma, field.device)
    pad = kernel.numel() // 2
    rows = torch.nn.functional.conv2d(
        torch.nn.functional.pad(field, (pad, pad, 0, 0), mode="reflect"),
        kernel.view(1, 1, 1, -1).expand(2, 1, 1, -1),
        groups=2,
    )
    both = torch.nn.functional.conv2d(
        torch.nn.functional.pad(rows, (0, 0, pad, pad), mode="reflect"),
        kernel.view(1, 1, -1, 1).expand(2, 1, -1, 1),
        groups=2,
    )
    blur = blur_matrix(sigma, 28, field.device)
    torch.testing.assert_close(blur @ field @ blur.T, both, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(blur.sum(dim=1), torch.ones(28))  # a weighted average: rows sum to 1
    with pytest.raises(ValueError, match="reaches past"):
        blur_matrix(sigma, pad, field.device)  # reflection needs the reach inside the image


@pytest.mark.parametrize(
    "spec, message",
    [("rotate_deg=-5", "rotate_deg=-5.0 must be between 0 and 90"), ("scale=2", "scale=2.0 must be between"),
     ("elastic_sigma_px=40", "between 0.5 and 9"), ("shear=3", "expected name=value"), ("shift_px=a", "not a number")],
)  # fmt: skip
def test_bad_strengths_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_deform(spec)


def test_deformations_png_and_cli(tmp_path: Path, tiny_mnist: Path) -> None:
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    drawn = deformed_examples(images, "elastic", parse_deform("shear_deg=10"), variants=3)
    assert drawn.shape == (3, 4, 28, 28) and drawn.dtype == torch.uint8
    runner = CliRunner()
    common = ["--data-dir", str(tiny_mnist), "--no-verify"]
    ok = runner.invoke(app, ["deformations", "--count", "5", "--out", str(tmp_path / "d.png"), *common])
    assert ok.exit_code == 0, ok.output
    with Image.open(tmp_path / "d.png") as png:
        assert png.width > 300 and png.height > 300
    bad = runner.invoke(app, ["deformations", "--deform", "rotate_deg=500", *common])
    assert (
        bad.exit_code == 2 and bad.stderr.startswith("Error: --deform rotate_deg=500") and bad.stderr.count("\n") == 1
    )


def test_a_training_owns_the_blur_matrix_its_steps_read(tiny_data: DeviceData) -> None:
    """A captured graph reads the matrix by address on every replay: it must live as long as
    the training, whatever other strengths other trainings build meanwhile."""
    elastic = TrainConfig(ModelConfig((16,)), "sgd", 0.05, batch_size=32, epochs=1, augment="elastic",
                          deform=Deform(elastic_sigma_px=5.0))  # fmt: skip
    run = Training(elastic, tiny_data, runtime=Runtime(graphs=True, static_on_cpu=True))
    assert run.runner is not None and run.runner.step.augment.blur is not None
    reads = weakref.ref(run.runner.step.augment.blur)
    x = tiny_data.x_train[:8]
    for sigma in torch.linspace(0.5, 9, 20).tolist():  # more strengths than any cache of 16 would keep
        augment_batch(x, "elastic", torch.Generator().manual_seed(0), Deform(elastic_sigma_px=sigma))
        Training(replace(elastic, deform=Deform(elastic_sigma_px=sigma)), tiny_data)
    gc.collect()
    matrix = reads()
    assert matrix is not None and torch.equal(matrix, blur_matrix(5.0, 28, x.device))
    assert not hasattr(blur_matrix, "cache_info")  # no module-level cache hands out device tensors


def test_sampling_grid_is_affine_grids() -> None:
    # The grid made by broadcasting places every pixel where F.affine_grid does.
    theta = torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(0))
    grid = Augmenter("affine", Deform(), torch.device("cpu"))._affine_grid(theta)
    expected = torch.nn.functional.affine_grid(theta, [7, 1, 28, 28], align_corners=False)
    torch.testing.assert_close(grid.permute(0, 2, 3, 1), expected, atol=1e-6, rtol=0)


def test_elastic_field_is_centred_blurred_noise() -> None:
    # Byte noise, centred and blurred on both axes: over many draws the field averages 0,
    # its spread is that of blurring uniform noise (a float draw's, to within a level in
    # 256), and neighbouring displacements move together while distant ones do not.
    augmenter = Augmenter("elastic", Deform(elastic_sigma_px=4.0), torch.device("cpu"))
    blur = augmenter.blur
    assert blur is not None
    field = augmenter._elastic_field(2_000, torch.Generator().manual_seed(0), torch.device("cpu")).double()
    assert field.shape == (2_000, 2, 28, 28)
    assert abs(field.mean().item()) < 0.15  # uncentred bytes would average -0.5
    uniform = torch.rand(2_000, 2, 28, 28, generator=torch.Generator().manual_seed(1)) * 256 - 128
    expected = (blur @ uniform @ blur.T).double()
    assert abs(field.std().item() / expected.std().item() - 1) < 0.02
    centre = field[..., 14, 14]
    near, far = field[..., 14, 15], field[..., 14, 2]
    assert torch.corrcoef(torch.stack([centre.flatten(), near.flatten()]))[0, 1] > 0.9
    assert abs(torch.corrcoef(torch.stack([centre.flatten(), far.flatten()]))[0, 1].item()) < 0.1
    x, y = field[:, 0].flatten(), field[:, 1].flatten()
    assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1].item()) < 0.05  # the two axes independent
