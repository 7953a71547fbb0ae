"""The one LightningModule: trains any ``nn.Module`` classifier described by a config."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics import MaxMetric, Metric

from cnnzoo.errors import check_choice, user_errors
from cnnzoo.models.weights import PRETRAINED_KEYS, without_weights
from cnnzoo.optim import param_groups

__all__ = [
    "STAGES",
    "TRAIN_TIME_KEY",
    "VAL_ACC_BEST_KEY",
    "EpochStats",
    "ImageClassifier",
    "split_logits",
]

Batch = tuple[Tensor, Tensor]
STAGES = ("train", "val", "test")
# a checkpoint's seconds of training so far (``ImageClassifier.train_time_s``)
TRAIN_TIME_KEY = "train_time_s"
# a checkpoint's best val/acc so far, which a resumed run's val/acc_best starts from
VAL_ACC_BEST_KEY = "val_acc_best"


def _plain(node: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Configs arrive as DictConfig or dict; hyperparameters must be plain data."""
    if isinstance(node, DictConfig):
        # OmegaConf types a container as any data; a DictConfig's is a dict
        return cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))
    return None if node is None else dict(node)


def split_logits(output: Tensor | Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """``(logits, auxiliary logits)`` of a net's output: a tensor, or — in training, for nets with
    auxiliary classifiers (GoogLeNet, torchvision's Inception) — a tuple whose first item is the
    main head's logits."""
    if isinstance(output, Tensor):
        return output, []
    logits, *aux = output
    return logits, [a for a in aux if a is not None]


# Workaround: MeanMetric reads every update back to the host for its NaN check, and without the
# check (nan_strategy="disable") drops weight= (measured on torchmetrics 1.9.0;
# tests/test_upstream.py::test_torchmetrics_mean_metric_syncs_at_each_update_or_drops_its_weights)
class EpochStats(Metric):
    """One stage's epoch metrics: top-1 accuracy (correct / all: micro-averaged, as
    ``MulticlassAccuracy(average="micro")``), top-5 accuracy when asked for, and the mean loss
    weighted by batch size. Counts and the loss sum stay on the device, updated in place every
    step (no read back to the host), and are summed over DDP processes by torchmetrics when
    computed.

    One metric of three in-place additions, rather than ``MulticlassAccuracy`` and
    ``MeanMetric``: those cost 148 µs a step on a CPU in a microbenchmark and 580 µs inside a
    LeNet training step, this one 34 and 184 µs (benchmarks/RESULTS.md, 2026-12-01 10:00).
    """

    full_state_update = False
    correct: Tensor
    correct_top5: Tensor
    images: Tensor
    loss_sum: Tensor

    def __init__(self, *, top5: bool = False) -> None:
        super().__init__()
        self.top5 = top5
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("correct_top5", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("images", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("loss_sum", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor, loss: Tensor) -> None:
        """``logits`` (N x classes), class indices ``target`` (N), the batch's mean ``loss``."""
        n = target.shape[0]
        self.correct.add_((logits.argmax(dim=1) == target).sum())
        if self.top5:
            top5 = logits.topk(5, dim=1).indices
            self.correct_top5.add_((top5 == target.unsqueeze(1)).any(dim=1).sum())
        self.images.add_(n)
        self.loss_sum.add_(loss * n)

    def compute(self) -> dict[str, Tensor]:
        values = {"acc": self.correct / self.images}
        if self.top5:
            values["acc_top5"] = self.correct_top5 / self.images
        return {**values, "loss": self.loss_sum / self.images}


class ImageClassifier(L.LightningModule):
    """Cross-entropy training of the network ``net`` (a Hydra config with a ``_target_``).

    The checkpoint's hyperparameters hold only plain data — the network's config, not the
    network — so ``cnnzoo.checkpoint.load_classifier(path)`` rebuilds it on its own and the file
    loads under ``torch.load(weights_only=True)``.

    Metrics (torchmetrics: ``EpochStats``, summed over DDP processes when computed):
    ``<stage>/loss`` and ``<stage>/acc`` (plain top-1 accuracy: correct / all), ``acc_top5``
    past 5 classes for validation and test, ``val/acc_best``. They are updated every step and
    logged once an epoch: ``self.log`` costs ~1-2 ms a call in Lightning's result collection, a
    tenth of a small net's step on a CPU. The training loss per step goes to the loggers every
    ``trainer.log_every_n_steps`` optimizer steps as ``train/loss_step``; the epoch mean reaches
    them as ``train/loss_epoch`` and the callbacks (checkpoint monitors) as ``train/loss``.
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
        backbone_lr_scale: float = 1.0,
        aux_loss_weight: float = 0.3,
        channels_last: bool = False,
        compile: bool = False,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        check_choice("model.scheduler_interval", scheduler_interval, ("epoch", "step"))
        self.save_hyperparameters(
            {
                "net": _plain(net),
                "num_classes": num_classes,
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "scheduler_interval": scheduler_interval,
                "label_smoothing": label_smoothing,
                "decay_norm_and_bias": decay_norm_and_bias,
                "backbone_lr_scale": backbone_lr_scale,
                "aux_loss_weight": aux_loss_weight,
                "channels_last": channels_last,
                "compile": compile,
                "input_shape": None if input_shape is None else list(input_shape),
            }
        )
        # a refused argument's error names the node: `model.net: stem='x' is not one of…`
        with user_errors("net"):
            self.net: nn.Module = instantiate(self.hparams["net"])
        if any(self.hparams["net"].get(key) for key in PRETRAINED_KEYS):
            # the checkpoints hold these weights from now on: rebuilding from one fetches none
            self.hparams["net"] = without_weights(self.hparams["net"], self.net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            # compile in place: the state_dict keeps its keys, so checkpoints stay portable
            self.net.compile()
        if input_shape is not None:
            # the model summary's sizes and FLOPs, and the input check before training
            self.example_input_array = torch.zeros(1, *input_shape)

        # "<stage>_stats" keys: a ModuleDict cannot hold "train" (nn.Module.train)
        self.metrics = nn.ModuleDict(
            {
                **{
                    f"{stage}_stats": EpochStats(top5=num_classes > 5 and stage != "train")
                    for stage in STAGES
                },
                "val_acc_best": MaxMetric(),
            }
        )
        self._last_logged_step = -1

    # `self.metrics` types its items as nn.Module: these name what each entry is
    def _stats(self, stage: str) -> EpochStats:
        return cast(EpochStats, self.metrics[f"{stage}_stats"])

    @property
    def metric_names(self) -> list[str]:
        """Every metric this module logs (what a checkpoint or early stopping can monitor)."""
        names = ["train/loss", "train/loss_epoch", "train/loss_step", "val/acc_best"]
        for stage in STAGES:
            names += [f"{stage}/acc", f"{stage}/loss"]
            names += [f"{stage}/acc_top5"] if self._stats(stage).top5 else []
        return names

    def forward(self, x: Tensor) -> Tensor | Sequence[Tensor]:
        """The net's output: the logits, or in training, for nets with auxiliary classifiers,
        a tuple that starts with them (see ``split_logits``)."""
        if self.hparams["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits, aux = split_logits(self(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams["label_smoothing"])
        if aux:  # auxiliary classifiers, in training: weighted 0.3 in GoogLeNet (Szegedy 2015)
            aux_loss = sum(
                F.cross_entropy(a, y, label_smoothing=self.hparams["label_smoothing"]) for a in aux
            )
            loss = loss + self.hparams["aux_loss_weight"] * aux_loss
        # MixUp/CutMix give soft targets (N x num_classes): accuracy counts the dominant class
        target = y.argmax(dim=1) if y.ndim > 1 else y
        self._stats(stage).update(logits.detach(), target, loss.detach())
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The loss of every ``log_every_n_steps``-th optimizer step to the loggers, at that
        step's 0-based index (Lightning's convention), straight to them: through ``self.log`` it
        would cost on every step (see the class docstring)."""
        trainer = self.trainer
        done = trainer.global_step  # optimizer steps taken, this one included
        every = trainer.log_every_n_steps  # type: ignore[attr-defined]  # set at runtime
        if done % every or done == self._last_logged_step:
            return
        self._last_logged_step = done
        if trainer.is_global_zero and trainer.loggers:
            loss = float(outputs["loss"])
            for logger in trainer.loggers:
                logger.log_metrics(
                    {"train/loss_step": loss, "epoch": trainer.current_epoch}, step=done - 1
                )

    def _log_epoch(self, stage: str) -> dict[str, Tensor]:
        stats = self._stats(stage)
        values = {f"{stage}/{name}": value for name, value in stats.compute().items()}
        stats.reset()
        if stage == "train":
            # the loggers get Lightning's name for an epoch value; callbacks see `train/loss`
            self.log("train/loss", values["train/loss"], logger=False)
            values["train/loss_epoch"] = values.pop("train/loss")
        self.log_dict(values, prog_bar=True)
        return values

    # --- training time and the best val/acc, carried by the checkpoints across resumes --------

    def on_fit_start(self) -> None:
        self._fit_start: float | None = time.perf_counter()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[TRAIN_TIME_KEY] = self.train_time_s
        best = cast(Metric, self.metrics["val_acc_best"])
        if best.update_count:
            checkpoint[VAL_ACC_BEST_KEY] = float(best.compute())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._train_time_before = float(checkpoint.get(TRAIN_TIME_KEY, 0.0))
        self._val_acc_best: float | None = checkpoint.get(VAL_ACC_BEST_KEY)

    @property
    def train_time_s(self) -> float:
        """Seconds spent fitting: this process's ``fit`` so far, plus what the checkpoint it
        resumed from had recorded — a run resumed after a pre-emption counts its whole training,
        comparable with an unbroken run's (the work lost since that checkpoint is not counted)."""
        start = getattr(self, "_fit_start", None)
        before = getattr(self, "_train_time_before", 0.0)
        return before + (0.0 if start is None else time.perf_counter() - start)

    def on_train_start(self) -> None:
        # the sanity check's validation must not count towards the best accuracy; a resumed
        # run's best so far (its checkpoint's) does
        best = cast(Metric, self.metrics["val_acc_best"])
        best.reset()
        restored = getattr(self, "_val_acc_best", None)
        if restored is not None:
            best.update(torch.tensor(restored, device=self.device))

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._stats("val").reset()
            return
        values = self._log_epoch("val")
        best = cast(Metric, self.metrics["val_acc_best"])
        best.update(values["val/acc"])
        self.log("val/acc_best", best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer over the net's parameter groups (no schedule, no trainer needed)."""
        groups = param_groups(
            self.net,
            exclude_norm_and_bias=not self.hparams["decay_norm_and_bias"],
            backbone_lr_scale=self.hparams["backbone_lr_scale"],
            lr=self.hparams["optimizer"].get("lr"),
        )
        optimizer: torch.optim.Optimizer = instantiate(self.hparams["optimizer"])(params=groups)
        return optimizer

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer()
        if self.hparams["scheduler"] is None:
            return optimizer
        settings = dict(self.hparams["scheduler"])
        if "total_steps" in settings and settings["total_steps"] is None:
            # a schedule over the whole run (cosine, one-cycle) whose config leaves its length
            # to the trainer: batches, or epochs for a per-epoch schedule
            settings["total_steps"] = (
                self.trainer.max_epochs
                if self.hparams["scheduler_interval"] == "epoch"
                else self.trainer.estimated_stepping_batches
            )
        scheduler = instantiate(settings)(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.hparams["scheduler_interval"],
            },
        }
