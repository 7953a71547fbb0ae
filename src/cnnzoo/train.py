"""Train (and test) a classifier: ``python train.py model=resnet18 data=cifar10 …``."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from cnnzoo.config import CONFIG_PATH
from cnnzoo.utils.distributed import distributed_job, use_hydra_job_command
from cnnzoo.utils.instantiate import instantiate_callbacks, instantiate_loggers
from cnnzoo.utils.records import write_job_summary, write_sweep_summary
from cnnzoo.utils.resume import prepare_resume

__all__ = ["main", "train"]

log = logging.getLogger(__name__)


def _metrics(trainer: L.Trainer) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(trainer.callback_metrics.items())}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate the datamodule, model, callbacks, loggers and trainer from ``cfg``; fit; test.

    Returns the run's record: final metrics and checkpoint paths.
    """
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    # a file, or `last`: the newest last.ckpt of this task; resuming continues that run's dir
    ckpt_path = prepare_resume(cfg)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    log.info("Instantiating model <%s>", cfg.model.net._target_)
    model: L.LightningModule = instantiate(cfg.model, _recursive_=False, _convert_="all")
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    record: dict[str, Any] = {"output_dir": cfg.paths.output_dir}
    start = time.perf_counter()
    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    record["train_time_s"] = time.perf_counter() - start
    fit_metrics = _metrics(trainer)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    record["best_ckpt"] = best or None
    record["last_ckpt"] = (
        (checkpoint.last_model_path or None) if isinstance(checkpoint, ModelCheckpoint) else None
    )
    if cfg.get("test"):
        if cfg.get("train") and not best:
            log.warning("No best checkpoint was saved; testing the current weights")
        trainer.test(
            model,
            datamodule=datamodule,
            ckpt_path=best or (None if cfg.get("train") else ckpt_path),
        )
    record["metrics"] = {**fit_metrics, **_metrics(trainer)}
    if trainer.world_size > 1:
        log.info("rank %d metrics: %s", trainer.global_rank, json.dumps(record["metrics"]))
    for logger in trainer.loggers:
        logger.finalize("success")
    return record


def finish_wandb_run(*, failed: bool) -> None:
    """End this job's W&B run, so the next job of a multirun starts its own: Lightning's
    WandbLogger attaches to a run still open in the process (one run, two jobs' history)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def _run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, record the job (also when it fails), return the optimised metric."""
    hydra_cfg = HydraConfig.get()
    record: dict[str, Any] = {"overrides": list(hydra_cfg.overrides.task), "status": "running"}
    try:
        # the next job of a multirun forms a DDP process group of its own
        with distributed_job():
            record.update(train(cfg), status="completed")
    except BaseException as error:
        # an Optuna search stops a hopeless trial early by raising optuna.TrialPruned
        status = "pruned" if type(error).__name__ == "TrialPruned" else "failed"
        record.update(status=status, error=f"{type(error).__name__}: {error}")
        raise
    finally:
        finish_wandb_run(failed=record["status"] != "completed")
        if rank_zero_only.rank == 0:
            write_job_summary(hydra_cfg.runtime.output_dir, record)
            if hydra_cfg.mode == RunMode.MULTIRUN:
                write_sweep_summary(hydra_cfg.sweep.dir)
    metric = cfg.get("optimized_metric")
    if metric and metric not in record["metrics"]:
        log.warning(
            "optimized_metric=%s was not logged (logged: %s)", metric, ", ".join(record["metrics"])
        )
    return record["metrics"].get(metric) if metric else None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
    # DDP ranks 1.. re-run this job (not the sweep) in the job's directory
    use_hydra_job_command()
    return _run(cfg)


if __name__ == "__main__":
    main()
