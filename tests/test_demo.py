from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mnist_bench.artifacts import checkpoint
from mnist_bench.artifacts.demo import demo_html, write_demo
from mnist_bench.artifacts.predict import MIN_CONTRAST, predict_files, read_image
from mnist_bench.cli import app
from mnist_bench.config import TrainConfig
from mnist_bench.data import DeviceData, load_split, normalize
from mnist_bench.model import ModelConfig
from mnist_bench.training.trainer import train
from tests.test_predict import blank_pictures
from tests.test_report import CHROMIUM, HEADLESS

runner = CliRunner()
CELL = 10  # each MNIST pixel painted as a 10x10 block: a 280x280 drawing, the pad's size


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory, real_mnist_dir: Path) -> Path:
    """A small MLP trained one epoch on the real MNIST training images: confident on real digits."""
    split = load_split(real_mnist_dir, "train")
    data = DeviceData.with_validation(split, torch.device("cpu"), val_size=5000)
    config = TrainConfig(ModelConfig((64,)), "adam", 2e-3, batch_size=128, epochs=1, seed=0)
    result = train(config, data, score_epochs=False)
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    checkpoint.save(folder, result.model, config, {"test": {"accuracy": 0.95}, "source": {"command": "train"}})
    return folder


@pytest.fixture(scope="module")
def real_mnist_dir() -> Path:
    from tests.conftest import REAL_DATA  # noqa: PLC0415

    if not (REAL_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST copy not found at {REAL_DATA}")
    return REAL_DATA


def drawing(digit: np.ndarray) -> np.ndarray:
    """A 28x28 MNIST digit as a person's drawing: dark ink on white paper, 280x280."""
    return np.kron(255 - digit, np.ones((CELL, CELL), dtype=np.uint8)).astype(np.uint8)


def run_in_page(page: str, script: str, tmp_path: Path, name: str) -> dict:
    """Open ``page`` with ``script`` appended in headless Chromium; the script's JSON comes back."""
    # A thrown error comes back as the result, so a failing test says why.
    guarded = (
        f"try {{\n{script}\n}} catch (e) {{ const pre = document.createElement('pre'); pre.id = 'results';"
        " pre.textContent = JSON.stringify({error: String(e.stack || e)}); document.body.appendChild(pre); }"
    )
    harness = page.replace("</body>", f"<script>\n{guarded}\n</script>\n</body>")
    path = tmp_path / f"{name}.html"
    path.write_text(harness)
    profile = "--user-data-dir=" + str(tmp_path / f"profile-{name}")
    assert CHROMIUM is not None
    command = [CHROMIUM, *HEADLESS, profile, "--dump-dom", path.resolve().as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="results">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    result = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert "error" not in result, result.get("error")
    return result


def test_page_is_self_contained(tmp_path: Path, tiny_data: DeviceData) -> None:
    config = TrainConfig(ModelConfig((16,)), "adam", 1e-3, batch_size=32, epochs=1)
    result = train(config, tiny_data, score_epochs=False)
    checkpoint.save(tmp_path / "m", result.model, config, {"source": {"command": "train", "note": "</script>"}})
    page = demo_html(checkpoint.load(tmp_path / "m"))
    assert not re.search(r'(src|href)\s*=\s*"?https?://', page) and "fetch(" not in page  # nothing from outside
    assert page.count("</script>") == page.count("<script")  # the payload cannot close its tag
    path = write_demo(checkpoint.load(tmp_path / "m"), tmp_path)
    assert path == tmp_path / "demo.html" and path.read_text() == page


def test_demo_and_export_cli_errors(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    for command in ("demo", "export"):
        result = runner.invoke(app, [command, str(tmp_path / "x.png")])
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert "is not part of a checkpoint" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
def test_page_agrees_with_predict_and_torch(tmp_path: Path, real_checkpoint: Path, real_mnist_dir: Path) -> None:
    ckpt = checkpoint.load(real_checkpoint)
    test = load_split(real_mnist_dir, "test")
    chosen = list(range(0, 2000, 100))  # 20 real test digits, every label among them
    digits = test.images[chosen].numpy()

    # predict's answers on the same drawings, saved as PNG files.
    paths = []
    for i, digit in zip(chosen, digits, strict=True):
        paths.append(tmp_path / f"digit-{i}.png")
        Image.fromarray(drawing(digit)).save(paths[-1])
    expected = predict_files(ckpt.model, paths, top=1)
    expected_inputs = [read_image(p).reshape(-1).tolist() for p in paths]

    raw = digits[:5].reshape(5, -1)
    with torch.no_grad():
        torch_probs = ckpt.model(normalize(torch.from_numpy(raw))).softmax(1).numpy()

    page = demo_html(ckpt)
    script = f"""
    const drawings = {json.dumps([d.tolist() for d in digits])};
    const raw = {json.dumps(raw.tolist())};
    const {{ ctx, pad }} = window.mnistDemo;
    const painted = drawings.map((digit) => {{
      window.mnistDemo.clear();
      digit.forEach((row, y) => row.forEach((v, x) => {{
        const g = 255 - v;
        ctx.fillStyle = `rgb(${{g}},${{g}},${{g}})`;
        ctx.fillRect(x * {CELL}, y * {CELL}, {CELL}, {CELL});
      }}));
      const shown = window.mnistDemo.update();
      return {{ label: Number(document.getElementById("answer").textContent), pixels: shown.pixels }};
    }});
    const probs = raw.map((pixels) => window.mnistDemo.classify(pixels));
    // A stroke drawn with pointer events, as a finger or mouse draws: a vertical bar, a "1".
    window.mnistDemo.clear();
    const box = pad.getBoundingClientRect();
    const at = (fx, fy) => ({{ clientX: box.left + fx * box.width, clientY: box.top + fy * box.height,
                               pointerId: 1, bubbles: true }});
    pad.dispatchEvent(new PointerEvent("pointerdown", at(0.5, 0.15)));
    for (let k = 1; k <= 20; k++) pad.dispatchEvent(new PointerEvent("pointermove", at(0.5, 0.15 + k * 0.035)));
    pad.dispatchEvent(new PointerEvent("pointerup", at(0.5, 0.85)));
    const stroke = {{ label: document.getElementById("answer").textContent,
                      ink: window.mnistDemo.update().pixels.filter((v) => v > 0).length }};
    const pre = document.createElement("pre");
    pre.id = "results";
    pre.textContent = JSON.stringify({{ painted, probs, stroke }});
    document.body.appendChild(pre);
    """
    results = run_in_page(page, script, tmp_path, "agree")

    labels = [p["label"] for p in results["painted"]]
    assert labels == [e.label for e in expected]
    # The same 28x28 input up to a few grey levels (Pillow's resize rounds in its own fixed point).
    diff = np.abs(np.array([p["pixels"] for p in results["painted"]]) - np.array(expected_inputs))
    assert diff.max() <= 12 and diff.mean() < 0.1
    assert sum(label == int(test.labels[i]) for label, i in zip(labels, chosen, strict=True)) >= 17
    np.testing.assert_allclose(np.array(results["probs"]), torch_probs, rtol=0, atol=1e-5)
    assert results["stroke"]["label"] != "" and results["stroke"]["ink"] > 20

    # A screenshot of the page with a digit drawn, desktop and phone sized, to look at.
    shot_page = tmp_path / "shot.html"
    first = json.dumps(digits[3].tolist())
    shot_page.write_text(
        page.replace(
            "</body>",
            f"""<script>
    {first}.forEach((row, y) => row.forEach((v, x) => {{ const g = 255 - v;
      window.mnistDemo.ctx.fillStyle = `rgb(${{g}},${{g}},${{g}})`;
      window.mnistDemo.ctx.fillRect(x * {CELL}, y * {CELL}, {CELL}, {CELL}); }}));
    window.mnistDemo.update();
    </script></body>""",
        )
    )
    for name, size in (("desktop", "900,640"), ("phone", "390,844")):
        shot = tmp_path / f"demo-{name}.png"
        subprocess.run(
            [CHROMIUM, *HEADLESS, "--user-data-dir=" + str(tmp_path / "p2"), f"--screenshot={shot}",
             f"--window-size={size}", shot_page.resolve().as_uri()],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
        with Image.open(shot) as image:
            colors = image.convert("L").getcolors(maxcolors=1 << 16)
        assert colors is None or len(colors) > 20  # not a blank page


@pytest.mark.slow
def test_onnx_export_matches_torch_on_the_test_set(tmp_path: Path, real_checkpoint: Path, real_mnist_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    result = runner.invoke(app, ["export", str(real_checkpoint / "model.pt"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    images = load_split(real_mnist_dir, "test").images
    logits, probs = session.run(None, {"pixels": images.numpy().astype(np.float32)})
    model = checkpoint.load(real_checkpoint).model
    with torch.no_grad():
        ref = model(normalize(images))
    assert logits.shape == (10_000, 10)
    np.testing.assert_allclose(logits, ref.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(probs, ref.softmax(1).numpy(), rtol=0, atol=1e-5)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
def test_page_and_predict_agree_on_what_is_blank(tmp_path: Path, tiny_data: DeviceData) -> None:
    config = TrainConfig(ModelConfig((16,)), "adam", 1e-3, batch_size=32, epochs=1)
    checkpoint.save(tmp_path / "m", train(config, tiny_data, score_epochs=False).model, config, {})
    ckpt = checkpoint.load(tmp_path / "m")
    paths = blank_pictures(tmp_path)
    faint = np.full((100, 100), 200, dtype=np.uint8)
    faint[20:80, 45:55] = 200 - MIN_CONTRAST  # the least contrast that still counts as ink
    Image.fromarray(faint).save(tmp_path / "faint.png")
    paths.append(tmp_path / "faint.png")
    pictures = []
    for path in paths:
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
            pictures.append({"w": rgba.width, "h": rgba.height, "rgba": list(rgba.tobytes())})
    script = f"""
    const pictures = {json.dumps(pictures)};
    const empty = pictures.map((p) => window.mnistDemo.toMnist(p.rgba, p.w, p.h).every((v) => v === 0));
    const pre = document.createElement("pre");
    pre.id = "results";
    pre.textContent = JSON.stringify({{ empty }});
    document.body.appendChild(pre);
    """
    results = run_in_page(demo_html(ckpt), script, tmp_path, "blank")
    expected = [p.blank for p in predict_files(ckpt.model, paths)]
    assert expected == [True] * (len(paths) - 1) + [False]
    assert results["empty"] == expected
