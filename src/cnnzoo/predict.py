"""Classify image files: ``python predict.py ckpt_path=…/best.ckpt inputs=<file, folder or glob>``.

The network comes from the checkpoint; the preprocessing from the training run's data config
(``<run>/.hydra/config.yaml``, or ``data=…``): images are converted to the data's mode (grey or
RGB), resized and centre-cropped to its image size and normalised with its mean and std — the
evaluation transform of training. Prints the top-k classes per image; ``--json`` (or
``json=true``) prints JSON instead and ``output=<file>`` writes it to a file.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from cnnzoo import console
from cnnzoo.config import CONFIG_PATH
from cnnzoo.errors import UserError, user_errors
from cnnzoo.eval import data_from_run

# torch is imported inside the functions that use it, so that `--help`, `--cfg job` and tab
# completion print without it (tests/test_startup.py)
if TYPE_CHECKING:
    from torch import Tensor

    from cnnzoo.data.base import ImageDataModule
    from cnnzoo.module import ImageClassifier

__all__ = ["IMAGE_SUFFIXES", "find_images", "load_for_inference", "main", "predict"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def load_for_inference(cfg: DictConfig) -> tuple[ImageClassifier, ImageDataModule]:
    """The checkpoint's model (eval mode, on CPU) and its datamodule (not set up)."""
    from cnnzoo.checkpoint import load_classifier

    ckpt_path = Path(cfg.ckpt_path)
    model = load_classifier(ckpt_path, cfg.get("trusted_targets") or ())
    data_from_run(cfg, ckpt_path)
    datamodule: ImageDataModule = instantiate(cfg.data)
    return model, datamodule


def find_images(inputs: str) -> list[Path]:
    """An image file, every image in a folder (recursively), or the images a glob matches."""
    path = Path(inputs)
    if path.is_file():
        return [path]
    candidates = (
        sorted(path.rglob("*"))
        if path.is_dir()
        else sorted(Path(p) for p in glob.glob(inputs, recursive=True))
    )
    images = [p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise UserError(
            f"inputs={inputs}: no image files found; give an image file, a folder or a glob "
            f"(e.g. 'photos/*.jpg') of {', '.join(IMAGE_SUFFIXES)} files"
        )
    return images


def eval_transform(datamodule: ImageDataModule) -> Callable[[Any], Tensor]:
    """The datamodule's evaluation transform (PIL image -> normalised ``C x H x W`` tensor)."""
    if hasattr(datamodule, "sample_transforms"):
        return datamodule.sample_transforms(train=False)
    import torch
    from torchvision.transforms import v2

    size = datamodule.image_size
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(datamodule.mean), list(datamodule.std)),
        ]
    )


def _read(path: Path, in_channels: int) -> Any:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        # palette, alpha, 16-bit and CMYK images all become the data's own mode
        return image.convert("L" if in_channels == 1 else "RGB")


def torch_grad_mode(mode: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``@torch.<mode>()`` (``inference_mode``, ``no_grad``) with torch imported when the
    function runs, not when its module is imported."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            import torch

            with getattr(torch, mode)():
                return function(*args, **kwargs)

        return run

    return decorate


@torch_grad_mode("inference_mode")
def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    """Top-k predictions per image: ``[{"path", "top_k": [{"class", "index", "probability"}]}]``.

    An unreadable file gets an ``error`` entry instead; the others are still classified.
    """
    import torch

    from cnnzoo.module import split_logits

    paths = find_images(str(cfg.inputs))
    model, datamodule = load_for_inference(cfg)
    transform = eval_transform(datamodule)
    names = [str(name) for name in getattr(datamodule, "class_names", None) or []]
    num_classes = int(model.hparams["num_classes"])
    if len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    k = min(int(cfg.top_k), num_classes)
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if cfg.device == "auto"
        else cfg.device
    )
    model.to(device)

    results: list[dict[str, Any]] = []
    for start in range(0, len(paths), int(cfg.batch_size)):
        batch, kept = [], []
        for path in paths[start : start + int(cfg.batch_size)]:
            try:
                batch.append(transform(_read(path, datamodule.in_channels)))
                kept.append(path)
            except (OSError, ValueError) as error:
                log.warning("Skipping %s: %s", path, error)
                results.append({"path": str(path), "error": f"{type(error).__name__}: {error}"})
        if not batch:
            continue
        logits, _ = split_logits(model(torch.stack(batch).to(device)))
        probs = logits.float().softmax(dim=1)
        top_p, top_i = probs.topk(k, dim=1)
        for path, p_row, i_row in zip(kept, top_p.tolist(), top_i.tolist(), strict=True):
            results.append(
                {
                    "path": str(path),
                    "top_k": [
                        {"class": names[i], "index": i, "probability": round(p, 6)}
                        for p, i in zip(p_row, i_row, strict=True)
                    ],
                }
            )
    return results


def _print_table(results: list[dict[str, Any]]) -> None:
    for result in results:
        if "error" in result:
            print(f"{result['path']}: {result['error']}")
            continue
        guesses = ", ".join(f"{t['class']} ({t['probability']:.3f})" for t in result["top_k"])
        print(f"{result['path']}: {guesses}")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        results = predict(cfg)
    if cfg.get("output"):
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.output).write_text(json.dumps(results, indent=2) + "\n")
        log.info("Wrote %d predictions to %s", len(results), cfg.output)
    if cfg.get("json"):
        print(json.dumps(results, indent=2))
    elif not cfg.get("output"):
        _print_table(results)


def main() -> None:
    # `--json` reads naturally on a command line; Hydra itself only takes key=value
    sys.argv = ["json=true" if arg == "--json" else arg for arg in sys.argv]
    console.prepare_command_line()
    console.quiet_third_party_messages()
    _main()


if __name__ == "__main__":
    main()
