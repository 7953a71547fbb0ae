"""The one LightningModule: trains any ``nn.Module`` classifier described by a config."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics import MaxMetric

from cnnzoo.metrics import TopKAccuracy
from cnnzoo.optim import param_groups

__all__ = ["ImageClassifier"]

Batch = tuple[Tensor, Tensor]


def _plain(node: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Configs arrive as DictConfig or dict; hyperparameters must be plain data."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return None if node is None else dict(node)


class ImageClassifier(L.LightningModule):
    """Cross-entropy training of the network ``net`` (a Hydra config with a ``_target_``).

    The checkpoint's hyperparameters hold only plain data — the network's config, not the
    network — so ``ImageClassifier.load_from_checkpoint(path)`` rebuilds it on its own and the
    file loads under ``torch.load(weights_only=True)``.

    Accuracy is plain (micro-averaged) top-1 accuracy: correct predictions / all predictions.
    """

    def __init__(
        self,
        *,
        net: Mapping[str, Any],
        num_classes: int,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        decay_norm_and_bias: bool = True,
        aux_loss_weight: float = 0.3,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
            )
        self.save_hyperparameters(
            {
                "net": _plain(net),
                "num_classes": num_classes,
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "scheduler_interval": scheduler_interval,
                "label_smoothing": label_smoothing,
                "decay_norm_and_bias": decay_norm_and_bias,
                "aux_loss_weight": aux_loss_weight,
                "channels_last": channels_last,
                "compile": compile,
            }
        )
        self.net: nn.Module = instantiate(self.hparams.net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            # compile in place: the state_dict keeps its keys, so checkpoints stay portable
            self.net.compile()

        # acc and, past 5 classes, acc_top5: one metric, one update a step
        top_k = (1, 5) if num_classes > 5 else (1,)
        self.train_acc = TopKAccuracy(top_k)
        self.val_acc = TopKAccuracy(top_k)
        self.test_acc = TopKAccuracy(top_k)
        self.val_acc_best = MaxMetric()
        self._loss_totals: dict[str, list] = {}

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)

    def _step(self, batch: Batch, stage: str, metric: TopKAccuracy) -> Tensor:
        x, y = batch
        if stage == "train" and getattr(self.net, "aux1", None) is not None:
            # GoogLeNet's auxiliary classifiers add 0.3 x their losses in training (Szegedy 2015)
            if self.hparams.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits, *aux = self.net.forward_with_aux(x)
            aux_loss = sum(self._loss(out, y) for out in aux)
            loss = self._loss(logits, y) + self.hparams.aux_loss_weight * aux_loss
        else:
            logits = self(x)
            loss = self._loss(logits, y)
        # MixUp/CutMix give soft targets (N x num_classes): metrics count the dominant class
        metric.update(logits, y.argmax(dim=1) if y.ndim > 1 else y)
        self._add_loss(stage, loss, len(y))
        return loss

    def _add_loss(self, stage: str, loss: Tensor, batch_size: int) -> None:
        """Sum the loss for the epoch mean; hand a training step's loss to the loggers when they
        write.

        ``self.log`` costs ~2 ms a call in Lightning's result collection (a tenth of a LeNet step
        on CPU, benchmarks/RESULTS.md), so the epoch means (``<stage>/loss``) come from a running
        sum logged once at epoch end, and a training step's loss (``train/loss_step``) is logged
        only on the steps the loggers write (every ``trainer.log_every_n_steps``). Not on the
        progress bar per step: the bar reads its values every batch, a device sync on GPUs.
        """
        detached = loss.detach()
        total = self._loss_totals.get(stage)
        if total is None:
            # [sum of loss x batch size, images]; each stage its own (validation runs inside a
            # training epoch); created here, as a resumed epoch skips on_train_epoch_start
            total = self._loss_totals[stage] = [torch.zeros((), device=self.device), 0]
        total[0] += detached * batch_size
        total[1] += batch_size
        trainer = self.trainer
        if stage == "train" and (
            (self.global_step + 1) % trainer.log_every_n_steps == 0 or trainer.fast_dev_run
        ):
            self.log("train/loss_step", detached, on_step=True, on_epoch=False)

    def _reset_loss(self, stage: str) -> None:
        self._loss_totals.pop(stage, None)

    def _log_epoch_loss(self, stage: str) -> None:
        if stage not in self._loss_totals:
            return
        loss_sum, count = self._loss_totals.pop(stage)
        # averaged over all DDP processes, once
        mean = self.trainer.strategy.reduce(loss_sum / count, reduce_op="mean")
        if stage == "train":
            # the loggers get it under Lightning's name for an epoch value; callbacks (checkpoint
            # monitors, the run summary) see `train/loss`, as for the other stages
            self.log("train/loss_epoch", mean, prog_bar=True)
            self.log("train/loss", mean, logger=False)
        else:
            self.log(f"{stage}/loss", mean, prog_bar=True)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def _log_epoch_metrics(self, stage: str, metric: TopKAccuracy) -> dict[str, Tensor]:
        # computed and logged once an epoch: logging the Metric objects from every step makes
        # Lightning move each metric's state per call (benchmarks/RESULTS.md: ~6% of a LeNet
        # step on CPU). compute() already syncs the states across DDP processes.
        accuracies = metric.compute().reshape(-1)  # torchmetrics squeezes a 1-element result
        names = ("acc", "acc_top5")[: len(accuracies)]
        values = {f"{stage}/{name}": value for name, value in zip(names, accuracies, strict=True)}
        self.log_dict(values, prog_bar=True)
        metric.reset()
        return values

    def on_train_epoch_start(self) -> None:
        self._reset_loss("train")

    def on_validation_epoch_start(self) -> None:
        self._reset_loss("val")

    def on_test_epoch_start(self) -> None:
        self._reset_loss("test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch_loss("train")
        self._log_epoch_metrics("train", self.train_acc)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_loss("test")
        self._log_epoch_metrics("test", self.test_acc)

    def on_train_start(self) -> None:
        # the sanity check's validation must not count towards the best accuracy
        self.val_acc_best.reset()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_acc.reset()
            return
        self._log_epoch_loss("val")
        self.val_acc_best.update(self._log_epoch_metrics("val", self.val_acc)["val/acc"])
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def configure_optimizers(self) -> Any:
        groups = param_groups(self.net, exclude_norm_and_bias=not self.hparams.decay_norm_and_bias)
        optimizer = instantiate(self.hparams.optimizer)(params=groups)
        if self.hparams.scheduler is None:
            return optimizer
        build = instantiate(self.hparams.scheduler)
        if (
            "total_steps" in inspect.signature(build).parameters
            and "total_steps" not in build.keywords
        ):
            # schedules over the whole run (cosine, one-cycle) learn its length from the trainer
            steps = self.trainer.estimated_stepping_batches
            if self.hparams.scheduler_interval == "epoch":
                steps = self.trainer.max_epochs
            build = functools.partial(build, total_steps=int(steps))
        scheduler = build(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }
