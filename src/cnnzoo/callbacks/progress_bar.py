"""Lightning's rich progress bar without the logger's version number (``v_num``)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

__all__ = ["ProgressBar"]


class ProgressBar(RichProgressBar):
    """The metrics the module puts on the bar, and nothing else: ``v_num`` names the logger's
    run version, which says nothing about training."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
