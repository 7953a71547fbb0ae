"""Log the network's size and cost once, when fitting starts."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from cnnzoo.models.stats import count_flops, count_parameters, format_count

__all__ = ["ModelStats"]

log = logging.getLogger(__name__)


class ModelStats(L.Callback):
    """Parameter count and forward FLOPs per image at the datamodule's input shape.

    On fit start (rank zero only) it counts one 1-image forward pass with ``FlopCounterMode``
    and logs ``model/params``, ``model/trainable_params`` and ``model/flops`` to every logger, as
    hyperparameters and as metrics at step 0. Nothing runs per step.
    """

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = getattr(pl_module, "net", pl_module)
        stats = {
            "model/params": count_parameters(net),
            "model/trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        }
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set at runtime
        shape = getattr(datamodule, "input_shape", None)
        if shape is not None:
            stats["model/flops"] = count_flops(net, shape)
        for logger in trainer.loggers:
            logger.log_hyperparams(stats)
            if trainer.ckpt_path is None:  # a resumed run's log holds them from its start
                logger.log_metrics(stats, step=0)
        at = f" at {'x'.join(map(str, shape))}" if shape is not None else ""
        flops = f", {format_count(stats['model/flops'])} FLOPs per image{at}" if shape else ""
        log.info(
            "%s: %s parameters%s", type(net).__name__, format_count(stats["model/params"]), flops
        )
