from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData, load_split
from mnist_bench.model import ModelConfig
from mnist_bench.predict import predict_files, to_mnist
from mnist_bench.train import train


def test_28x28_light_on_dark_passes_through() -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    image[10:18, 12:16] = 255
    assert np.array_equal(to_mnist(image), image)


def test_dark_on_light_is_inverted_and_large_images_are_fitted() -> None:
    paper = np.full((200, 120), 250, dtype=np.uint8)
    paper[20:180, 50:70] = 10  # a tall dark stroke: a "1"
    out = to_mnist(paper)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0].max() == 0 and out[:, 0].max() == 0  # background became dark
    rows = np.nonzero(out.max(1) > 50)[0]
    assert 18 <= rows.max() - rows.min() + 1 <= 21  # fitted into the 20-pixel box
    ys, xs = np.nonzero(out)
    weights = out[ys, xs].astype(float)
    assert abs(np.average(ys, weights=weights) - 14) <= 1.5 and abs(np.average(xs, weights=weights) - 14) <= 1.5


def test_background_option_overrides_detection() -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    image[5:10, 5:10] = 200
    assert to_mnist(image, background="light")[0, 0] == 255


def test_predict_files_classifies_pngs_and_reports_bad_ones(
    tmp_path: Path, tiny_mnist: Path, tiny_data: DeviceData
) -> None:
    model = train(TrainConfig(ModelConfig((32,)), "adam", 3e-3, batch_size=32, epochs=3), tiny_data).model
    test = load_split(tiny_mnist, "test", verify=False)
    paths = []
    for i in range(6):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(test.images[i].numpy()).save(path)
        paths.append(path)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    paths.insert(2, tmp_path / "broken.png")
    preds = predict_files(model, paths)
    assert preds[2].error is not None and "cannot decode" in preds[2].error
    good = [p for p in preds if p.error is None]
    assert [p.label for p in good] == test.labels[:6].tolist()
    for p in good:
        assert len(p.top) == 3 and p.top[0][0] == p.label and 0 < p.top[0][1] <= 1
        assert p.top[0][1] >= p.top[1][1]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P"])
def test_any_mode_is_read(tmp_path: Path, mode: str) -> None:
    from mnist_bench.predict import read_image

    image = Image.new("L", (40, 60), 255)
    image.paste(0, (15, 10, 25, 50))
    path = tmp_path / f"x.{'jpg' if mode == 'RGB' else 'png'}"
    image.convert(mode).save(path)
    out = read_image(path)
    assert out.shape == (28, 28) and out.max() > 100 and out[0, 0] == 0
