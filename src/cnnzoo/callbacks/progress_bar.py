"""Lightning's rich progress bar without the logger's version number (``v_num``), moved no more
often than it is drawn."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

__all__ = ["ProgressBar"]


class ProgressBar(RichProgressBar):
    """The metrics the module puts on the bar, and nothing else: ``v_num`` names the logger's
    run version, which says nothing about training.

    The bar is drawn ``refresh_rate`` times a second; Lightning's moves it and reads the
    metrics at every training batch (~165 µs a batch, ~1% of a LeNet step on a CPU). This one
    does so at most as often as it is drawn, and at each epoch's last batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._moved_at = -math.inf

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    # Workaround: RichProgressBar moves and reads the metrics at every batch (measured on
    # lightning 2.6.6; tests/test_upstream.py::
    # test_lightnings_rich_progress_bar_reads_the_metrics_at_every_batch)
    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.is_enabled:
            now = time.monotonic()
            last = batch_idx + 1 >= self.total_train_batches
            if now - self._moved_at < 1 / self.refresh_rate and not last:
                return
            self._moved_at = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
