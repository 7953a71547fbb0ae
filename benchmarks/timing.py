"""Lightning callbacks that time a cnnzoo run from the inside."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from benchmarks.plain import PlainLoop

__all__ = ["FirstStepMark", "InterleavedTimer"]


def _sync(trainer: L.Trainer) -> None:
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize()


class InterleavedTimer(L.Callback):
    """Times each training epoch's steps, interleaved with the plain loop's, A/B/A/B.

    An epoch's cnnzoo time runs from ``on_train_epoch_start`` to the end of its last batch:
    every batch fetch, step, hook, log call and progress-bar refresh — but not validation,
    checkpointing or epoch-end logging (``python -m benchmarks --sections startup`` counts those
    in the whole run). ``per_step=True`` runs one plain step after each cnnzoo step and subtracts
    its time, so both sides see the same load on a shared machine; ``per_step=False`` runs a
    whole plain epoch after each cnnzoo epoch (on a GPU, where per-step synchronisation would
    stall cnnzoo's asynchronous pipeline).
    """

    def __init__(self, plain: PlainLoop | None, *, per_step: bool = True) -> None:
        self.plain = plain
        self.per_step = per_step
        self.cnnzoo_s: list[float] = []
        self.plain_s: list[float] = []
        self._start = 0.0
        self._plain_in_epoch = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _sync(trainer)
        self._plain_in_epoch = 0.0
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self.plain is not None and self.per_step:
            self._plain_in_epoch += self.plain.timed_step()
        if idx == trainer.num_training_batches - 1:
            _sync(trainer)
            self.cnnzoo_s.append(time.perf_counter() - self._start - self._plain_in_epoch)
            if self.plain is not None:
                self.plain_s.append(self._plain_in_epoch if self.per_step else self.plain.epoch())


class FirstStepMark(L.Callback):
    """Writes the wall-clock time (``time.time()``) of the first training step to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int
    ) -> None:
        if trainer.global_step == 0 and not self.path.exists():
            self.path.write_text(repr(time.time()))
