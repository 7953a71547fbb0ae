"""`predict.py` classifies image files with the checkpoint's own preprocessing, printing JSON
alone on stdout and writing nothing else, skipping hostile files by name; `export.py` from the
command line (the formats themselves: test_export.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import error_message, run
from conftest import Compose
from dataset_files import write_imagefolder, write_png_bomb
from PIL import Image

from cnnzoo.checkpoint import load_classifier
from cnnzoo.errors import UserError
from cnnzoo.eval import evaluate
from cnnzoo.export import export
from cnnzoo.predict import predict


@pytest.fixture(scope="module")
def ckpt(trained: tuple[Path, dict]) -> Path:
    return trained[0] / "checkpoints" / "best.ckpt"


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


def test_predict_a_folder_prints_json_alone_and_writes_nothing(
    ckpt: Path, digits: tuple[Path, list[int]], tmp_path: Path
) -> None:
    folder, _ = digits
    result = run("predict", f"ckpt_path={ckpt}", f"inputs={folder}", "top_k=3", "--json",
                 cwd=tmp_path)  # fmt: skip
    predictions = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert len(predictions) == 10  # the .txt file is not an image
    for p in predictions:
        probs = [t["probability"] for t in p["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
    right = sum(int(Path(p["path"]).stem) == int(p["top_k"][0]["class"]) for p in predictions)
    assert right >= 5  # chance is 1 in 10
    assert list(tmp_path.iterdir()) == []  # no run folder, no log file


def test_predict_a_glob_to_a_file(
    ckpt: Path, digits: tuple[Path, list[int]], tmp_path: Path, compose_cfg: Compose
) -> None:
    folder, _ = digits
    cfg = compose_cfg(f"ckpt_path={ckpt}", f"inputs={folder}/*.jpg", config="predict")
    assert sorted(Path(p["path"]).name for p in predict(cfg)) == ["1.jpg", "4.jpg", "7.jpg"]


def test_predict_without_images_says_so(ckpt: Path, tmp_path: Path, compose_cfg: Compose) -> None:
    cfg = compose_cfg(f"ckpt_path={ckpt}", f"inputs={tmp_path}", config="predict")
    with pytest.raises(UserError, match="no image files found"):
        predict(cfg)


def test_predict_skips_bombs_and_broken_files_by_name_and_predicts_the_rest(
    ckpt: Path, digits: tuple[Path, list[int]], tmp_path: Path, compose_cfg: Compose
) -> None:
    folder, _ = digits
    photos = tmp_path / "photos"
    photos.mkdir()
    for image in folder.glob("[0-3].*"):
        (photos / image.name).write_bytes(image.read_bytes())
    bombs = [write_png_bomb(photos / f"bomb{side}.png", side) for side in (10_000, 20_000)]
    (photos / "empty.png").write_bytes(b"")
    (photos / "loop").symlink_to("..")  # a folder link back up is not followed
    cfg = compose_cfg(f"ckpt_path={ckpt}", f"inputs={photos}", config="predict")

    results = {Path(r["path"]).name: r for r in predict(cfg)}

    assert sorted(results) == ["0.png", "1.jpg", "2.png", "3.png", *sorted(p.name for p in [
        *bombs, photos / "empty.png"])]  # fmt: skip
    for name in ("bomb10000.png", "bomb20000.png"):
        assert "top_k" not in results[name]
        assert results[name]["error"].startswith("DecompressionBombError: Image size")
    assert results["empty.png"]["error"].startswith("UnidentifiedImageError")
    assert all(len(results[name]["top_k"]) == 5 for name in ("0.png", "1.jpg", "2.png", "3.png"))


def test_predict_and_eval_refuse_data_of_other_channels_in_the_same_one_line(
    ckpt: Path, tmp_path: Path, compose_cfg: Compose
) -> None:
    loose = tmp_path / "loose.ckpt"  # outside its run dir: the data is the command line's
    loose.write_bytes(ckpt.read_bytes())
    rgb = write_imagefolder(tmp_path / "rgb", tuple("0123456789"), 2, splits=(), size=28)
    data = ["data=imagefolder", f"data.path={rgb}", "data.image_size=28"]
    expected = (
        f"{loose} holds a model with model.net.in_channels=1 but ImageFolderDataModule has "
        "in_channels=3; give the data it was trained on (data=…), or leave data= out to use "
        "its run's"
    )

    result = run("predict", f"ckpt_path={loose}", f"inputs={rgb}", *data, check=False)

    assert error_message(result) == expected
    cfg = compose_cfg(f"ckpt_path={loose}", f"paths.output_dir={tmp_path}", *data, config="eval")
    with pytest.raises(UserError) as refused:
        evaluate(cfg)
    assert str(refused.value) == expected


def test_predict_to_an_unwritable_file_is_one_line(
    ckpt: Path, digits: tuple[Path, list[int]], tmp_path: Path
) -> None:
    folder, _ = digits
    result = run("predict", f"ckpt_path={ckpt}", f"inputs={folder}/0.png", f"output={tmp_path}",
                 check=False)  # fmt: skip
    assert error_message(result) == f"could not write output={tmp_path}: Is a directory (EISDIR)"


def test_export_to_onnx_writes_the_model_and_its_preprocessing(
    ckpt: Path, tmp_path: Path, compose_cfg: Compose
) -> None:
    out = tmp_path / "model.onnx"
    record = export(compose_cfg(f"ckpt_path={ckpt}", "format=onnx", f"output={out}",
                                config="export"))  # fmt: skip
    assert record["max_abs_diff"] < 1e-4
    meta = json.loads(out.with_suffix(".onnx.json").read_text())
    assert meta["input_shape"] == ["batch", 1, 28, 28] and len(meta["class_names"]) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_export_to_pt2(ckpt: Path, tmp_path: Path, compose_cfg: Compose) -> None:
    out = tmp_path / "model.pt2"
    export(compose_cfg(f"ckpt_path={ckpt}", "format=pt2", f"output={out}", config="export"))
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        expected = load_classifier(ckpt).net(x)
    torch.testing.assert_close(torch.export.load(str(out)).module()(x), expected)


def test_export_rejects_an_unknown_format(ckpt: Path, compose_cfg: Compose) -> None:
    with pytest.raises(UserError, match="format=tflite"):
        export(compose_cfg(f"ckpt_path={ckpt}", "format=tflite", config="export"))
