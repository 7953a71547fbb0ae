"""Training throughput, logged once an epoch: images per second (and peak GPU memory)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

__all__ = ["Throughput"]


class Throughput(L.Callback):
    """Logs ``train/images_per_s`` — all processes together — over the epoch's training batches
    (validation excluded), and ``train/gpu_mem_gb``, the peak memory a CUDA device held.

    Images are counted from the batches' lengths on the host, so nothing waits on the device
    between steps; the one device sync is at the epoch's last batch.
    """

    metric_names = ("train/images_per_s", "train/gpu_mem_gb")

    def __init__(self) -> None:
        self._images = 0
        self._start = 0.0
        self._end = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._images = 0
        self._start = self._end = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._images += len(batch[0])
        if batch_idx == trainer.num_training_batches - 1 and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # the epoch's queued work counts too
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
            pl_module.log("train/gpu_mem_gb", peak, reduce_fx="max", sync_dist=True)
        seconds = self._end - self._start
        if self._images and seconds > 0:
            images_per_s = self._images * trainer.world_size / seconds
            pl_module.log("train/images_per_s", images_per_s)
