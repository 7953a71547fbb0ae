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

    Each batch only keeps a reference to its (detached) loss: reading it back every batch would
    wait for the device (a sync per step on a GPU), and even checking it on the device costs more
    than the step's own bookkeeping on a CPU. The kept losses are checked together every
    ``check_every_n_steps`` batches (default: ``trainer.log_every_n_steps``, when the loggers
    read a loss anyway), at the epoch's last batch and when training ends: one read each time.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        # the losses since the last check, with their (global step, epoch)
        self._losses: list[Tensor] = []
        self._where: list[tuple[int, int]] = []

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
        self._losses.append(loss.detach())
        self._where.append((trainer.global_step, trainer.current_epoch))
        every = self.check_every_n_steps or (
            trainer.log_every_n_steps  # type: ignore[attr-defined]  # set at runtime
        )
        if batch_idx + 1 == trainer.num_training_batches or (batch_idx + 1) % every == 0:
            self.check()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check()

    def check(self) -> None:
        """Raise ``NonFiniteLossError`` if a batch since the last check had a non-finite loss."""
        if not self._losses:
            return
        losses = torch.stack(self._losses)
        bad = (~torch.isfinite(losses)).nonzero()  # the one read back to the host
        if len(bad) == 0:
            self._losses.clear()
            self._where.clear()
            return
        first = int(bad[0])
        step, epoch = self._where[first]
        raise NonFiniteLossError(
            f"the training loss is {float(losses[first])} at step {step} (epoch {epoch}): the "
            "run diverged and was stopped. Lower the learning rate (model.optimizer.lr), clip "
            "gradients (trainer.gradient_clip_val=1.0) or train in bf16 "
            "(trainer.precision=bf16-mixed) instead of fp16"
        )
