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
from torchmetrics import MaxMetric, MetricCollection

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

        def metrics(stage: str) -> MetricCollection:
            stage_metrics = {"acc": TopKAccuracy(top_k=1)}
            if num_classes > 5:
                stage_metrics["acc_top5"] = TopKAccuracy(top_k=5)
            return MetricCollection(stage_metrics, prefix=f"{stage}/")

        self.train_metrics = metrics("train")
        self.val_metrics = metrics("val")
        self.test_metrics = metrics("test")
        self.val_acc_best = MaxMetric()

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)

    def _step(self, batch: Batch, stage: str, metrics: MetricCollection) -> Tensor:
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
        metrics.update(logits, y.argmax(dim=1) if y.ndim > 1 else y)
        on_step = stage == "train"
        # validation and test losses are averaged over all DDP processes (once, at epoch end)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=not on_step,
        )
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_metrics)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val", self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test", self.test_metrics)

    def _log_epoch_metrics(self, metrics: MetricCollection) -> dict[str, Tensor]:
        # computed and logged once an epoch: logging the Metric objects from every step makes
        # Lightning move each metric's state per call (benchmarks/RESULTS.md: ~6% of a LeNet
        # step on CPU). compute() already syncs the states across DDP processes.
        values = metrics.compute()
        self.log_dict(values, prog_bar=True)
        metrics.reset()
        return values

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics(self.train_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics(self.test_metrics)

    def on_train_start(self) -> None:
        # the sanity check's validation must not count towards the best accuracy
        self.val_acc_best.reset()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_metrics.reset()
            return
        self.val_acc_best.update(self._log_epoch_metrics(self.val_metrics)["val/acc"])
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
