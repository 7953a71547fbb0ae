"""Lightning's ``ModelCheckpoint`` with the per-batch work it does not need left out."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(LightningModelCheckpoint):
    """Saves exactly what Lightning's ``ModelCheckpoint`` saves, with the same ``state_key`` (so
    checkpoints of either resume with either), at less cost per training batch — cnnzoo runs two
    of them (``best.ckpt``, ``last.ckpt``), and Lightning calls every hook of every callback at
    every batch:

    - ``state_key`` is formatted once: Lightning formats it (a ``repr`` of five settings) at each
      of the six hooks of a batch, to name the hook in its profiler;
    - a checkpoint that saves by epoch (``every_n_train_steps`` 0, no ``train_time_interval``)
      returns from ``on_train_batch_end`` at once, where Lightning's reads the trainer's state
      before reaching the same conclusion.

    Together 220 → 56 µs a batch for the two, in a LeNet run on a CPU (benchmarks/RESULTS.md,
    2026-12-01 10:00).
    """

    _state_key: str | None = None

    # Workaround: the trainer formats state_key at every hook call (measured on lightning
    # 2.6.6; tests/test_upstream.py::
    # test_lightning_formats_each_callbacks_state_key_at_every_hook_call)
    @property
    def state_key(self) -> str:
        # its settings (monitor, mode, every_n_*, train_time_interval) are fixed in __init__
        if self._state_key is None:
            self._state_key = super().state_key
        return self._state_key

    # Workaround: Lightning's asks the trainer whether it may save at every batch, also when it
    # saves by epoch (measured on lightning 2.6.6; tests/test_upstream.py::
    # test_lightnings_model_checkpoint_reads_the_trainer_at_every_batch_when_it_saves_by_epoch)
    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
