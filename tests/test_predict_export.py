"""`predict.py` classifies image files with the checkpoint's own preprocessing; `export.py` writes
ONNX / torch.export (.pt2) models that reproduce PyTorch's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import run, train_short
from PIL import Image


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = train_short(tmp_path_factory.mktemp("run"), "trainer.max_epochs=3")
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """Test-split digits saved as files in awkward forms: RGB JPEG at another size, RGBA PNG."""
    folder = tmp_path_factory.mktemp("images")
    archive = np.load(Path(__file__).parents[1] / "src/cnnzoo/data/mnist_5k.npz")
    picks = [int(np.flatnonzero(archive["labels"] == d)[-1]) for d in range(10)]
    for digit, index in zip(range(10), picks, strict=True):
        image = Image.fromarray(archive["images"][index])
        if digit % 3 == 1:
            image.convert("RGB").resize((56, 56)).save(folder / f"{digit}.jpg", quality=95)
        elif digit % 3 == 2:
            image.convert("RGBA").save(folder / f"{digit}.png")
        else:
            image.save(folder / f"{digit}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder, list(range(10))


def test_predict_a_folder_prints_json_top_k(ckpt: Path, digits: tuple[Path, list[int]]) -> None:
    folder, labels = digits
    result = run("predict.py", f"ckpt_path={ckpt}", f"inputs={folder}", "top_k=3", "--json")
    predictions = json.loads(result.stdout[result.stdout.index("[") :])
    assert len(predictions) == 10  # the .txt file is not an image
    for p in predictions:
        probs = [t["probability"] for t in p["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
    right = sum(int(Path(p["path"]).stem) == int(p["top_k"][0]["class"]) for p in predictions)
    assert right >= 5  # chance is 1 in 10


def test_predict_glob_to_file(ckpt: Path, digits: tuple[Path, list[int]], tmp_path: Path) -> None:
    folder, _ = digits
    out = tmp_path / "predictions.json"
    run("predict.py", f"ckpt_path={ckpt}", f"inputs={folder}/*.jpg", f"output={out}")
    assert sorted(Path(p["path"]).name for p in json.loads(out.read_text())) == [
        "1.jpg",
        "4.jpg",
        "7.jpg",
    ]


def test_predict_without_images_says_so(ckpt: Path, tmp_path: Path) -> None:
    result = run("predict.py", f"ckpt_path={ckpt}", f"inputs={tmp_path}", check=False)
    assert result.returncode == 1
    assert "no image files found" in result.stderr


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_reproduces_pytorch(ckpt: Path, tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":  # the `export` extra (part of `dev`)
        pytest.importorskip("onnxscript")
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"model.{fmt}"
    result = run("export.py", f"ckpt_path={ckpt}", f"format={fmt}", f"output={out}")
    assert "reproduces PyTorch" in result.stdout + result.stderr
    meta = json.loads(out.with_suffix(out.suffix + ".json").read_text())
    assert meta["input_shape"] == ["batch", 1, 28, 28] and len(meta["class_names"]) == 10

    from cnnzoo.module import ImageClassifier

    net = ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).net
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        expected = net.eval()(x)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        actual = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    else:
        actual = torch.export.load(str(out)).module()(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-3)


def test_export_rejects_unknown_format(ckpt: Path) -> None:
    result = run("export.py", f"ckpt_path={ckpt}", "format=tflite", check=False)
    assert result.returncode == 1
    assert "choose one of onnx, pt2" in result.stderr
