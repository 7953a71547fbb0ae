"""At the end of testing: per-class accuracy, macro F1, the confusion matrix and the most
confidently misclassified images — written to files and sent to every logger that holds images;
W&B also gets an interactive confusion matrix and a table of predictions."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from cnnzoo import plots
from cnnzoo.callbacks.images import class_names, displayable, log_image_file
from cnnzoo.records import write_failure
from cnnzoo.trackers import best_effort

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
    ``confusion_matrix.csv``/``.png`` and ``misclassified.png`` (the ``num_misclassified`` most
    confident mistakes). TensorBoard gets the figures as images (``test/confusion_matrix``,
    ``test/misclassified``); W&B gets them as images too, plus the table ``test/per_class``, the
    interactive chart ``test/confusion_matrix_chart`` and the table ``test/predictions`` (image,
    true and predicted class, confidence) of the mistakes and of ``num_samples`` fixed test images
    (the first images of every batch, spread over the set); other loggers (CSV) rely on the files.

    The logits are read with a forward hook on the LightningModule, so testing runs once.
    """

    metric_names = ("test/f1_macro", "test/acc_balanced")

    def __init__(
        self, *, dirpath: str | None = None, num_misclassified: int = 32, num_samples: int = 32
    ) -> None:
        self.dirpath = dirpath
        self.num_misclassified = num_misclassified
        self.num_samples = num_samples
        self._hook: Any = None
        self._logits: Tensor | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = int(pl_module.hparams["num_classes"])
        self.matrix = torch.zeros(
            num_classes, num_classes, dtype=torch.long, device=pl_module.device
        )
        self.wrong: dict[str, Tensor] = {}
        self.sample: dict[str, Tensor] = {}
        batches = trainer.num_test_batches[0] if trainer.num_test_batches else 0
        # the first images of each batch: a sample over the whole (unshuffled) test set
        self._per_batch = (
            math.ceil(self.num_samples / batches) if 0 < batches < math.inf else self.num_samples
        )

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
            found = _select(images, targets, predicted, confidence, mistakes)
            if self.wrong:
                found = {k: torch.cat([self.wrong[k], v]) for k, v in found.items()}
            keep = found["confidence"].argsort(descending=True)[: self.num_misclassified]
            self.wrong = {k: v[keep] for k, v in found.items()}
        taken = len(self.sample.get("true", ()))
        if taken < self.num_samples:
            first = slice(0, min(self._per_batch, self.num_samples - taken))
            found = _select(images, targets, predicted, confidence, first)
            if self.sample:
                found = {k: torch.cat([self.sample[k], v]) for k, v in found.items()}
            self.sample = found
        self._logits = None

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._hook.remove()
        matrix = trainer.strategy.reduce(self.matrix, reduce_op="sum").long().cpu()
        per_class = class_metrics(matrix)
        present = per_class["support"] > 0
        pl_module.log("test/f1_macro", per_class["f1"].mean().float())
        pl_module.log("test/acc_balanced", per_class["accuracy"][present].mean().float())
        if trainer.is_global_zero:
            try:
                self.write(trainer, matrix, per_class)
            except OSError as error:  # the test metrics are logged: a report must not undo that
                log.warning(
                    "The test report could not be written to %s (%s); the test metrics are "
                    "recorded",
                    self._dirpath(trainer),
                    write_failure(error),
                )

    def _dirpath(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath or Path(trainer.default_root_dir) / "test_report")

    def write(self, trainer: L.Trainer, matrix: Tensor, per_class: dict[str, Tensor]) -> None:
        names = class_names(trainer, matrix.shape[0])
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
                displayable(trainer, self.wrong["images"]),
                [names[i] for i in self.wrong["true"]],
                [names[i] for i in self.wrong["predicted"]],
                self.wrong["confidence"].tolist(),
            )
        paths = {key: plots.save(figure, out / f"{key}.png") for key, figure in figures.items()}
        log.info("Test report written to %s", out)
        for key, path in paths.items():
            log_image_file(trainer, f"test/{key}", path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # tables are staged in W&B's data folder (~/.local/share/wandb), which may not
                # be writable: W&B then misses them, the run does not fail
                with best_effort("W&B", "test/per_class"):
                    logger.log_table(key="test/per_class", columns=columns, data=rows)
                with best_effort("W&B", "test/confusion_matrix_chart and test/predictions"):
                    self._log_wandb_predictions(trainer, logger, matrix, names)

    def _log_wandb_predictions(
        self, trainer: L.Trainer, logger: WandbLogger, matrix: Tensor, names: list[str]
    ) -> None:
        import wandb

        # the chart counts (true, predicted) pairs: one pair per test image, from the matrix
        pairs = matrix.nonzero()
        counts = matrix[pairs[:, 0], pairs[:, 1]]
        chart = wandb.plot.confusion_matrix(
            y_true=pairs[:, 0].repeat_interleave(counts).tolist(),
            preds=pairs[:, 1].repeat_interleave(counts).tolist(),
            class_names=names,
            title="Confusion matrix (test)",
        )
        columns: list[str | int] = ["subset", "image", "true", "predicted", "confidence", "correct"]
        data = []
        for subset, found in (("sample", self.sample), ("mistake", self.wrong)):
            if not found:
                continue
            for image, true, predicted, confidence in zip(
                displayable(trainer, found["images"]),
                found["true"].tolist(),
                found["predicted"].tolist(),
                found["confidence"].tolist(),
                strict=True,
            ):
                # wandb.Image casts floats to uint8 as they are: [0, 1] would be black
                pixels = (image * 255).round().astype(np.uint8)
                picture = wandb.Image(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)
                data.append(
                    [subset, picture, names[true], names[predicted], confidence, true == predicted]
                )
        # wandb objects, which the W&B logger hands to wandb.log (its signature says floats)
        media: dict[str, Any] = {
            "test/confusion_matrix_chart": chart,
            "test/predictions": wandb.Table(columns=columns, data=data),
        }
        logger.log_metrics(media, step=trainer.global_step)


def _select(
    images: Tensor, targets: Tensor, predicted: Tensor, confidence: Tensor, index: Any
) -> dict[str, Tensor]:
    return {
        "images": images[index].detach().float().cpu(),
        "true": targets[index].cpu(),
        "predicted": predicted[index].cpu(),
        "confidence": confidence[index].cpu(),
    }
