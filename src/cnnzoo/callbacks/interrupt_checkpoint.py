"""Ctrl-C, SIGTERM (`timeout`, `kill`, SLURM ending a job) and SLURM's pre-emption / time-limit
signal to a submitit job leave a checkpoint behind."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L

from cnnzoo import requeue
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

    In a submitit job (``hydra/launcher=slurm``), SLURM's pre-emption / time-limit signal stops
    training at the end of the batch in progress, on every rank, and the job is requeued once
    this checkpoint is saved (``cnnzoo.requeue``): the requeued job resumes from it, its newest.

    Not Lightning's ``OnExceptionCheckpoint``: the trainer treats a file that callback names as a
    checkpoint to resume from whenever ``ckpt_path`` is None, which made a rerun in the same run
    directory silently restore it. Here a run resumes only when asked (the user, or the launcher
    that requeues a job).
    """

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        requeue.training(True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        requeue.training(False)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if requeue.stop_training(trainer):
            # every rank agreed to stop after this batch. Workaround: Lightning has no public
            # "stop now" (should_stop waits for min_epochs and validates first); at SIGTERM it
            # stops once the batch is complete (logged, counted, its schedule stepped), so the
            # checkpoint saved next resumes exactly there (measured on lightning 2.6.6;
            # tests/test_requeue.py::
            # test_a_job_resumed_after_the_signal_ends_as_if_it_ran_through)
            signal.raise_signal(signal.SIGTERM)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        requeue.training(False)
        if outcome_of(exception).status != Status.INTERRUPTED or not trainer.training:
            return
        if trainer.global_step == 0:
            return  # nothing trained yet: the run restarts from scratch just as well
        log.warning("Training interrupted: saving %s at step %d", self.path, trainer.global_step)
        trainer.save_checkpoint(self.path)
