"""Stop a diverging run at once: a NaN or infinite training loss ends it with one message."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from cnnzoo.errors import UserError

__all__ = ["FiniteLoss", "NonFiniteLossError"]


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite."""


class FiniteLoss(L.Callback):
    """Fails the run when a training step's loss is not finite — before the next validation, so
    diverged weights never become ``best.ckpt``, and at most ``check_every_n_steps`` batches after
    it happened.

    Each batch only records, on the device, which batch first had a non-finite loss: reading the
    loss back every batch would wait for the device (a sync per step on a GPU). The record is
    read every ``check_every_n_steps`` batches (default: ``trainer.log_every_n_steps``, when the
    loggers read a loss anyway), at the epoch's last batch and when training ends.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._reset()

    def _reset(self, device: torch.device | str = "cpu") -> None:
        # on the device: the running batch index, the first bad one (-1: none) and its loss
        self._index = torch.zeros((), dtype=torch.long, device=device)
        self._first = torch.full((), -1, dtype=torch.long, device=device)
        self._loss = torch.zeros((), dtype=torch.float32, device=device)
        # on the host: (global step, epoch) of the batches since the last check
        self._seen: list[tuple[int, int]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset(pl_module.device)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, Tensor):
            return
        loss = loss.detach()
        new = ~torch.isfinite(loss) & (self._first < 0)
        self._first = torch.where(new, self._index, self._first)
        self._loss = torch.where(new, loss.float(), self._loss)
        self._index += 1
        self._seen.append((trainer.global_step, trainer.current_epoch))
        every = self.check_every_n_steps or (
            trainer.log_every_n_steps  # type: ignore[attr-defined]  # set at runtime
        )
        if batch_idx + 1 == trainer.num_training_batches or (batch_idx + 1) % every == 0:
            self.check()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check()

    def check(self) -> None:
        """Raise ``NonFiniteLossError`` if a batch since the last check had a non-finite loss."""
        first = int(self._first)
        if first < 0:
            self._seen.clear()
            self._index.zero_()
            return
        step, epoch = self._seen[first]
        raise NonFiniteLossError(
            f"the training loss is {float(self._loss)} at step {step} (epoch {epoch}): the run "
            "diverged and was stopped. Lower the learning rate (model.optimizer.lr), clip "
            "gradients (trainer.gradient_clip_val=1.0) or train in bf16 "
            "(trainer.precision=bf16-mixed) instead of fp16"
        )
