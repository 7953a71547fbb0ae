"""Classify image files: ``python predict.py ckpt_path=…/best.ckpt inputs=<file, folder or glob>``.

The network comes from the checkpoint; the preprocessing from the training run's data config
(``<run>/.hydra/config.yaml``, or ``data=…``): images are converted to the data's mode (grey or
RGB), resized and centre-cropped to its image size and normalised with its mean and std — the
evaluation transform of training. Prints the top-k classes per image; ``--json`` (or
``json=true``) prints JSON instead and ``output=<file>`` writes it to a file.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from cnnzoo import console
from cnnzoo.config import CONFIG_PATH
from cnnzoo.console import torch_grad_mode
from cnnzoo.errors import UserError, user_errors
from cnnzoo.records import write_failure

# torch (and torchvision, through cnnzoo.data.image_files) is imported inside the functions that
# use it, so that `--help`, `--cfg job` and tab completion print without it (tests/test_startup.py)

__all__ = ["main", "predict"]

log = logging.getLogger(__name__)


@torch_grad_mode("inference_mode")
def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    """Top-k predictions per image: ``[{"path", "top_k": [{"class", "index", "probability"}]}]``.

    A file that cannot be decoded, or is over PIL's pixel limit (a decompression bomb), gets an
    ``error`` entry instead (``{"path", "error"}``) and a warning; the others are classified.
    """
    import torch

    from cnnzoo.checkpoint import load_for_inference
    from cnnzoo.data.image_files import UnreadableImage, find_images, load_image
    from cnnzoo.module import split_logits

    paths = find_images(str(cfg.inputs))
    model, datamodule = load_for_inference(cfg)
    transform = datamodule.eval_transform()
    mode = "L" if datamodule.in_channels == 1 else "RGB"
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
                image = load_image(path, mode, exif_transpose=True)
            except UnreadableImage as error:
                log.warning("Skipping %s: %s", path, error)
                results.append({"path": str(path), "error": str(error)})
                continue
            batch.append(transform(image))
            kept.append(path)
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
        output = Path(cfg.output)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(results, indent=2) + "\n")
        except OSError as error:
            raise UserError(f"could not write output={output}: {write_failure(error)}") from None
        log.info("Wrote %d predictions to %s", len(results), output)
    bad = sum("error" in result for result in results)
    if bad:
        log.warning("%d of %d images could not be read (named above): skipped", bad, len(results))
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
