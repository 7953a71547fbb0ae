"""Train (and test) a classifier: ``python train.py model=resnet18 data=cifar10 …``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, cast

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from cnnzoo import console
from cnnzoo.callbacks.dashboard import tracker_links
from cnnzoo.callbacks.interrupt_checkpoint import interrupt_exit_code
from cnnzoo.checkpoint import config_targets, epoch_and_step, load_classifier, resume_checkpoint
from cnnzoo.config import CONFIG_PATH, validate
from cnnzoo.errors import UserError, as_user_error
from cnnzoo.launch import needs_own_process, run_job_in_child
from cnnzoo.records import write_job_summary, write_sweep_summary
from cnnzoo.trackers import finish_wandb_run, instantiate_callbacks, instantiate_loggers

__all__ = ["main", "train"]

log = logging.getLogger(__name__)


def _metrics(trainer: L.Trainer) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(trainer.callback_metrics.items())}


def _checkpoints(trainer: L.Trainer) -> tuple[str | None, str | None]:
    """(best, last): the file of the checkpoint callback that monitors a metric, and of the one
    that keeps the newest epoch (cnnzoo's default callbacks: best.ckpt and last.ckpt)."""
    best = last = None
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
            if callback.monitor is not None and best is None:
                best = callback.best_model_path
            elif callback.monitor is None:
                last = callback.best_model_path
    return best, last


def check_monitors(trainer: L.Trainer, model: L.LightningModule) -> None:
    """A callback monitoring a metric nobody logs fails before training, not after an epoch."""
    logged = set(getattr(model, "metric_names", ()))
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # set at runtime
        logged |= set(getattr(callback, "metric_names", ()))
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # set at runtime
        monitor = getattr(callback, "monitor", None)
        if not logged or monitor is None or monitor in logged:
            continue
        raise UserError(
            f"{type(callback).__name__} monitors {monitor!r}, which is not a metric this run "
            f"logs; choose one of: {', '.join(sorted(logged))}"
        )


def check_input_fits(model: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """One image through the network before training: a net that needs larger images (timm's
    and torchvision's ImageNet stems on 28 px digits, AlexNet's ImageNet stem) says so in one
    message with the fix."""
    example = getattr(model, "example_input_array", None)
    if example is None:
        return
    net = getattr(model, "net", model)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(example)
    except RuntimeError as error:
        size = tuple(example.shape[1:])
        first = str(error).strip().splitlines()[0]
        raise UserError(
            f"the network cannot take {'x'.join(map(str, size))} images ({first}); "
            f"resize the data for it with data.image_size=<size> (e.g. data.image_size=224 for "
            f"an ImageNet stem), or use the small stem (model.net.stem=small) where there is one"
        ) from error
    finally:
        net.train(was_training)


def _own_targets(cfg: DictConfig) -> list[str]:
    """The ``_target_``s of the model config this run was given (the user's own, so trusted)."""
    return [target for _, target in config_targets(OmegaConf.to_container(cfg.model))]


def _raise_if_pruned(trainer: L.Trainer) -> None:
    """An Optuna trial stopped by its pruner ends here, on rank 0, as the sweeper expects."""
    callbacks = trainer.callbacks  # type: ignore[attr-defined]  # set at runtime
    reason = next((cb.pruned for cb in callbacks if getattr(cb, "pruned", None)), None)
    if reason is not None and trainer.is_global_zero:
        import optuna

        raise optuna.TrialPruned(reason)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate the datamodule, model, callbacks, loggers and trainer from ``cfg``; fit; test
    the best checkpoint (reloaded from its file, as eval.py reloads it).

    Returns the run's record: final metrics and checkpoint paths.
    """
    validate(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    task_dir = Path(cfg.paths.log_dir) / cfg.task_name
    run_dir = Path(cfg.paths.output_dir)
    trusted = _own_targets(cfg)
    ckpt_path = (
        resume_checkpoint(cfg.get("ckpt_path"), task_dir, trusted) if cfg.get("train") else None
    )

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    log.info("Instantiating model <%s>", cfg.model.net.get("name") or cfg.model.net._target_)
    model: L.LightningModule = instantiate(cfg.model, _recursive_=False, _convert_="all")
    # resuming in the checkpoint's own run dir: the CSV and TensorBoard logs continue too
    resume_step = None
    if ckpt_path and Path(ckpt_path).resolve().parent.parent == run_dir.resolve():
        resume_step = epoch_and_step(ckpt_path, trusted)[1]
    loggers = instantiate_loggers(cfg.get("logger"), run_dir=run_dir, resume_step=resume_step)
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    check_monitors(trainer, model)
    check_input_fits(model, datamodule)
    for logger in trainer.loggers:
        logger.log_hyperparams(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))

    try:
        record = _fit_and_test(cfg, trainer, model, datamodule, ckpt_path)
    except BaseException:
        finish_wandb_run(failed=True)
        raise
    finish_wandb_run(failed=False)
    return record


def _fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None,
) -> dict[str, Any]:
    record: dict[str, Any] = {"output_dir": cfg.paths.output_dir}
    if ckpt_path:
        record["resumed_from"] = ckpt_path
    start = time.perf_counter()
    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    record["train_time_s"] = time.perf_counter() - start
    _raise_if_pruned(trainer)
    fit_metrics = _metrics(trainer)
    best, last = _checkpoints(trainer)
    record["best_ckpt"], record["last_ckpt"] = best, last
    if cfg.get("test"):
        tested = (best or last) if cfg.get("train") else cfg.get("ckpt_path")
        if tested:
            # the weights the file holds (with EMA: the average), as eval.py will load them
            log.info("Testing %s", tested)
            # this run's own config named the net: its targets are trusted
            model = load_classifier(tested, _own_targets(cfg))
        elif cfg.get("train"):
            log.warning("No checkpoint was saved; testing the weights training ended with")
        record["tested_ckpt"] = tested
        trainer.test(model, datamodule=datamodule, verbose=trainer.is_global_zero)
    record["metrics"] = {**fit_metrics, **_metrics(trainer)}
    if trainer.world_size > 1:
        log.info("rank %d metrics: %s", trainer.global_rank, json.dumps(record["metrics"]))
    links = tracker_links(trainer)
    if links:
        record["trackers"] = links  # where this run's W&B run and TensorBoard logs are
    for logger in trainer.loggers:
        logger.finalize("success")
    return record


def _run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, record the job (also when it fails), return the optimised metric."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:
        with console.quietly("lightning.pytorch.utilities.rank_zero"):
            own_process = needs_own_process(instantiate(cfg.trainer, logger=False))
    if multirun and own_process:
        record = run_job_in_child()
        write_sweep_summary(hydra_cfg.sweep.dir)
        return _outcome(cfg, record)
    record = {"overrides": list(hydra_cfg.overrides.task), "status": "running"}
    exit_code = None
    try:
        record.update(train(cfg), status="completed")
    except BaseException as error:
        exit_code = interrupt_exit_code(error)
        user_error = as_user_error(error)
        # an Optuna search stops a hopeless trial early by raising optuna.TrialPruned
        pruned = type(error).__name__ == "TrialPruned"
        status = "interrupted" if exit_code else "pruned" if pruned else "failed"
        reason = user_error or error
        record.update(status=status, error=f"{type(reason).__name__}: {reason}")
        if exit_code:
            record["error"] = f"interrupted by {'SIGTERM' if exit_code == 143 else 'Ctrl-C'}"
        elif user_error is not None and user_error is not error:
            raise user_error from error
        raise
    finally:
        if rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # set at runtime
            write_job_summary(hydra_cfg.runtime.output_dir, record)
            if multirun:
                write_sweep_summary(hydra_cfg.sweep.dir)
        if exit_code:
            # 130 / 143, as shells report a process ended by SIGINT / SIGTERM; a sweep stops too
            sys.exit(exit_code)
    return _outcome(cfg, record)


def _outcome(cfg: DictConfig, record: dict[str, Any]) -> float | None:
    """The job's optimised metric; a job run in a child process that failed fails here too."""
    status = record.get("status")
    if status == "pruned":
        import optuna

        raise optuna.TrialPruned(record.get("error", ""))
    if status != "completed":
        if record.get("exit_code") in (130, 143):
            sys.exit(record["exit_code"])
        raise UserError(f"the job failed: {record.get('error', 'no record was written')}")
    metric = cfg.get("optimized_metric")
    metrics = record.get("metrics", {})
    if metric and metric not in metrics:
        log.warning("optimized_metric=%s was not logged (logged: %s)", metric, ", ".join(metrics))
    return metrics.get(metric) if metric else None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _main(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
    return _run(cfg)


def main() -> None:
    console.prepare_command_line()
    console.quiet_third_party_messages()
    _main()


if __name__ == "__main__":
    main()
