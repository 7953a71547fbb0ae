"""What the callbacks that show images share: class names, the pixels a person should see, and
one PNG sent to every logger that holds images."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from cnnzoo import plots
from cnnzoo.trackers import best_effort

__all__ = ["class_names", "displayable", "log_image_file"]


def class_names(trainer: L.Trainer, num_classes: int) -> list[str]:
    """The datamodule's class names, or the class indices when it has none (or a wrong count)."""
    datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set at runtime
    names = getattr(datamodule, "class_names", None)
    if names is not None and len(names) == num_classes:
        return [str(name) for name in names]
    return [str(i) for i in range(num_classes)]


def displayable(trainer: L.Trainer, images: Tensor) -> np.ndarray:
    """A normalised ``N x C x H x W`` batch → ``N x H x W x C`` in [0, 1], undoing the
    datamodule's mean and std (without them, each image is stretched to [0, 1])."""
    datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set at runtime
    return plots.displayable(
        images.detach().float().cpu().numpy(),
        getattr(datamodule, "mean", None),
        getattr(datamodule, "std", None),
    )


def log_image_file(trainer: L.Trainer, key: str, path: Path) -> None:
    """Send a PNG to TensorBoard (an image) and W&B (a media panel) at the current step; the
    other loggers (CSV) have the file. A tracker that cannot take it warns (``best_effort``)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            from PIL import Image

            with best_effort("TensorBoard", key):
                pixels = np.asarray(Image.open(path).convert("RGB"))
                logger.experiment.add_image(
                    key, pixels, global_step=trainer.global_step, dataformats="HWC"
                )
        elif isinstance(logger, WandbLogger):
            with best_effort("W&B", key):
                logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
