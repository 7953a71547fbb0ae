"""Ctrl-C, SIGTERM (SLURM pre-emption, `timeout`, `kill`) and SIGUSR1 leave a checkpoint behind."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["InterruptCheckpoint", "interrupt_exit_code"]

log = logging.getLogger(__name__)

# what shells report for a process ended by SIGINT / SIGTERM
SIGINT_EXIT, SIGTERM_EXIT = 130, 143


def interrupt_exit_code(error: BaseException) -> int | None:
    """130 for Ctrl-C, 143 for SIGTERM, None for anything else.

    Lightning turns SIGTERM into ``SIGTERMException`` at the next batch boundary, and Ctrl-C into
    ``sys.exit(1)`` raised while it handles the ``KeyboardInterrupt``.
    """
    if isinstance(error, SIGTERMException):
        return SIGTERM_EXIT
    if isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt):
        return SIGINT_EXIT
    return None


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
        if interrupt_exit_code(exception) is None or not trainer.training:
            return
        if trainer.global_step == 0:
            return  # nothing trained yet: the run restarts from scratch just as well
        log.warning("Training interrupted: saving %s", self.path)
        trainer.save_checkpoint(self.path)
