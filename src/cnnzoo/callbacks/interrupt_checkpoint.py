"""Ctrl-C, SIGTERM (SLURM pre-emption, `timeout`, `kill`) and SIGUSR1 leave a checkpoint behind."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from cnnzoo.records import Status, outcome_of

__all__ = ["InterruptCheckpoint"]

log = logging.getLogger(__name__)


# Workaround: Lightning resumes from OnExceptionCheckpoint's file when ckpt_path is None
# (measured on lightning 2.6.6; tests/test_upstream.py::
# test_lightning_resumes_from_an_on_exception_checkpoint_when_ckpt_path_is_none)
class InterruptCheckpoint(L.Callback):
    """Saves ``<dirpath>/last.ckpt`` when training is interrupted by Ctrl-C or SIGTERM, at the
    batch it reached, so ``ckpt_path=last`` (or the file) resumes it. A crash saves nothing: its
    state is not one to resume, and the last epoch's ``last.ckpt`` stays as it was.

    Not Lightning's ``OnExceptionCheckpoint``: the trainer treats a file that callback names as a
    checkpoint to resume from whenever ``ckpt_path`` is None, which made a rerun in the same run
    directory silently restore it. Here a run resumes only when the user asks.
    """

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if outcome_of(exception).status != Status.INTERRUPTED or not trainer.training:
            return
        if trainer.global_step == 0:
            return  # nothing trained yet: the run restarts from scratch just as well
        log.warning("Training interrupted: saving %s", self.path)
        trainer.save_checkpoint(self.path)
