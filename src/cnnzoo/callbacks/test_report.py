"""At the end of testing: per-class accuracy, macro F1, the confusion matrix and the most
confidently misclassified images — written to files and sent to every logger that holds images."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from cnnzoo import plots

__all__ = ["TestReport", "class_metrics"]

log = logging.getLogger(__name__)


def class_metrics(matrix: Tensor) -> dict[str, Tensor]:
    """Per-class support, accuracy (= recall), precision and F1 from a confusion matrix.

    A class never predicted has precision 0 and a class absent from the data F1 0, as in
    scikit-learn's ``zero_division=0``.
    """
    matrix = matrix.double()
    correct = matrix.diag()
    support = matrix.sum(dim=1)
    predicted = matrix.sum(dim=0)
    recall = correct / support.clamp(min=1)
    precision = correct / predicted.clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return {"support": support, "accuracy": recall, "precision": precision, "f1": f1}


class TestReport(L.Callback):
    """Collects test predictions and reports them per class.

    Metrics logged (so they reach ``summary.json``): ``test/f1_macro`` and ``test/acc_balanced``
    (mean per-class accuracy). Files under ``dirpath``: ``per_class.csv``,
    ``confusion_matrix.csv``/``.png`` and ``misclassified.png``. TensorBoard gets the figures as
    images, W&B as images plus a per-class table; other loggers (CSV) rely on the files.

    The logits are read with a forward hook on the LightningModule, so testing runs once.
    """

    metric_names = ("test/f1_macro", "test/acc_balanced")

    def __init__(self, *, dirpath: str | None = None, num_misclassified: int = 32) -> None:
        self.dirpath = dirpath
        self.num_misclassified = num_misclassified
        self._hook: Any = None
        self._logits: Tensor | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = int(pl_module.hparams.num_classes)
        self.matrix = torch.zeros(
            num_classes, num_classes, dtype=torch.long, device=pl_module.device
        )
        self.wrong: dict[str, Tensor] = {}

        def keep_logits(module: Any, inputs: Any, output: Tensor) -> None:
            self._logits = output.detach()

        self._hook = pl_module.register_forward_hook(keep_logits)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._logits is None:
            return
        images, targets = batch[0], batch[1]
        if targets.ndim > 1:  # soft targets: the dominant class
            targets = targets.argmax(dim=1)
        probs = self._logits.float().softmax(dim=1)
        confidence, predicted = probs.max(dim=1)
        n = self.matrix.shape[0]
        self.matrix += torch.bincount(targets * n + predicted, minlength=n * n).view(n, n)
        mistakes = predicted != targets
        if mistakes.any() and self.num_misclassified > 0:
            found = {
                "images": images[mistakes].detach().float().cpu(),
                "true": targets[mistakes].cpu(),
                "predicted": predicted[mistakes].cpu(),
                "confidence": confidence[mistakes].cpu(),
            }
            if self.wrong:
                found = {k: torch.cat([self.wrong[k], v]) for k, v in found.items()}
            keep = found["confidence"].argsort(descending=True)[: self.num_misclassified]
            self.wrong = {k: v[keep] for k, v in found.items()}
        self._logits = None

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._hook.remove()
        matrix = trainer.strategy.reduce(self.matrix, reduce_op="sum").long().cpu()
        per_class = class_metrics(matrix)
        present = per_class["support"] > 0
        pl_module.log("test/f1_macro", per_class["f1"].mean().float())
        pl_module.log("test/acc_balanced", per_class["accuracy"][present].mean().float())
        if trainer.is_global_zero:
            self.write(trainer, matrix, per_class)

    def _class_names(self, trainer: L.Trainer, num_classes: int) -> list[str]:
        names = getattr(trainer.datamodule, "class_names", None)
        if names is not None and len(names) == num_classes:
            return [str(name) for name in names]
        return [str(i) for i in range(num_classes)]

    def _dirpath(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath or Path(trainer.default_root_dir) / "test_report")

    def write(self, trainer: L.Trainer, matrix: Tensor, per_class: dict[str, Tensor]) -> None:
        names = self._class_names(trainer, matrix.shape[0])
        out = self._dirpath(trainer)
        out.mkdir(parents=True, exist_ok=True)
        columns = ["class", "support", "accuracy", "precision", "f1"]
        rows = [
            [name, int(per_class["support"][i])]
            + [round(float(per_class[k][i]), 6) for k in columns[2:]]
            for i, name in enumerate(names)
        ]
        with open(out / "per_class.csv", "w", newline="") as f:
            csv.writer(f).writerows([columns, *rows])
        with open(out / "confusion_matrix.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true \\ predicted", *names])
            writer.writerows([name, *row] for name, row in zip(names, matrix.tolist(), strict=True))
        figures = {
            "confusion_matrix": plots.confusion_matrix_figure(matrix.numpy(), names),
        }
        if self.wrong:
            figures["misclassified"] = plots.misclassified_figure(
                self._displayable(trainer, self.wrong["images"]),
                [names[i] for i in self.wrong["true"]],
                [names[i] for i in self.wrong["predicted"]],
                self.wrong["confidence"].tolist(),
            )
        paths = {key: plots.save(figure, out / f"{key}.png") for key, figure in figures.items()}
        log.info("Test report written to %s", out)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for key, path in paths.items():
                    image = _read_png(path)
                    logger.experiment.add_image(f"test/{key}", image, dataformats="HWC")
            elif isinstance(logger, WandbLogger):
                for key, path in paths.items():
                    logger.log_image(key=f"test/{key}", images=[str(path)])
                logger.log_table(key="test/per_class", columns=columns, data=rows)

    @staticmethod
    def _displayable(trainer: L.Trainer, images: Tensor) -> np.ndarray:
        """Undo the datamodule's normalisation: ``N x C x H x W`` → ``N x H x W x C`` in [0, 1]."""
        mean = getattr(trainer.datamodule, "mean", None)
        std = getattr(trainer.datamodule, "std", None)
        if mean is not None and std is not None and len(mean) == images.shape[1]:
            images = images * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(
                1, -1, 1, 1
            )
        else:  # unknown normalisation: stretch each image to [0, 1]
            low = images.amin(dim=(1, 2, 3), keepdim=True)
            high = images.amax(dim=(1, 2, 3), keepdim=True)
            images = (images - low) / (high - low).clamp(min=1e-8)
        return images.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))
