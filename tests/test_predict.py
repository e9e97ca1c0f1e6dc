from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_bench.artifacts.predict import MIN_CONTRAST, predict_files, read_image, to_mnist
from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData, load_split
from mnist_bench.model import ModelConfig
from mnist_bench.training.trainer import train


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
    from mnist_bench.artifacts.predict import read_image

    image = Image.new("L", (40, 60), 255)
    image.paste(0, (15, 10, 25, 50))
    path = tmp_path / f"x.{'jpg' if mode == 'RGB' else 'png'}"
    image.convert(mode).save(path)
    out = read_image(path)
    assert out.shape == (28, 28) and out.max() > 100 and out[0, 0] == 0


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A real PNG file that declares ``width`` x ``height`` pixels in a few bytes, as a decompression bomb does."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def blank_pictures(folder: Path) -> list[Path]:
    made = {
        "white.png": Image.new("L", (28, 28), 255),
        "black.png": Image.new("L", (28, 28), 0),
        "transparent.png": Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
        "grey.png": Image.new("RGB", (50, 40), (120, 130, 140)),  # one flat colour, neither dark nor light
        "grey28.png": Image.new("L", (28, 28), 90),
    }
    noisy = np.random.default_rng(0).integers(235, 256, size=(60, 60)).astype(np.uint8)  # paper with grain
    made["paper.png"] = Image.fromarray(noisy)
    paths = []
    for name, image in made.items():
        image.save(folder / name)
        paths.append(folder / name)
    return paths


def test_blank_pictures_are_no_digit(tmp_path: Path, tiny_data: DeviceData) -> None:
    model = train(TrainConfig(ModelConfig((16,)), "adam", 3e-3, batch_size=32, epochs=1), tiny_data).model
    digit = Image.new("L", (40, 60), 255)
    digit.paste(0, (15, 10, 25, 50))  # a dark stroke on paper: a digit, classified
    digit.save(tmp_path / "one.png")
    paths = [*blank_pictures(tmp_path), tmp_path / "one.png"]
    preds = predict_files(model, paths)
    for pred in preds[:-1]:
        assert pred.blank and pred.label is None and pred.error is None and not pred.classified, pred.path
        assert pred.to_dict() == {"file": pred.path, "label": None, "note": "no digit found (blank image)"}
        assert not read_image(Path(pred.path)).any()  # all black: the page's rule for an empty pad
    assert preds[-1].classified and not preds[-1].blank


def test_a_faint_but_real_stroke_is_still_a_digit() -> None:
    paper = np.full((100, 100), 200, dtype=np.uint8)
    paper[20:80, 45:55] = 200 - MIN_CONTRAST  # just enough contrast
    assert to_mnist(paper).any()
    paper[20:80, 45:55] = 200 - MIN_CONTRAST + 1  # just too little: paper with a smudge
    assert not to_mnist(paper).any()


@pytest.mark.parametrize("side", [20_000, 10_000])  # past twice Pillow's limit it refuses; past once, it warns
def test_oversized_images_are_one_line_and_the_others_are_classified(
    tmp_path: Path, tiny_data: DeviceData, side: int
) -> None:
    model = train(TrainConfig(ModelConfig((16,)), "adam", 3e-3, batch_size=32, epochs=1), tiny_data).model
    bomb = header_only_png(tmp_path / "bomb.png", side, side)
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[8:20, 12:16] = 255
    Image.fromarray(digit).save(tmp_path / "digit.png")
    preds = predict_files(model, [bomb, tmp_path / "digit.png"])
    assert preds[0].error is not None and preds[0].error.startswith("too large to decode safely (")
    assert "\n" not in preds[0].error and preds[0].label is None
    assert preds[1].classified
