"""Train (and test) a classifier: ``python train.py model=resnet18 data=cifar10 …``.

The run's story in one place: resume decided once (``cnnzoo.resume``), every check made before
the run dir is touched (``RunAttempt.start``), one outcome recorded however the job ends.
Heavy libraries are imported inside the functions that use them, so that ``--help`` and
``--cfg job`` print without loading torch.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnzoo import console
from cnnzoo.config import CONFIG_PATH
from cnnzoo.errors import UserError, as_user_error, user_errors
from cnnzoo.records import (
    ATTEMPTS_DIR,
    CHECKPOINT_DIR,
    Outcome,
    RunAttempt,
    Status,
    outcome_of,
    read_job_summary,
    without_key,
    write_sweep_summary,
)
from cnnzoo.resume import (
    ResumePlan,
    check_resumable,
    newest_checkpoint,
    plan_resume,
    planned,
    rewrite_command_line,
)

if TYPE_CHECKING:
    import lightning as L

    from cnnzoo.module import ImageClassifier

__all__ = ["main", "train"]

log = logging.getLogger(__name__)


def _metrics(trainer: L.Trainer) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(trainer.callback_metrics.items())}


def _checkpoints(trainer: L.Trainer) -> tuple[str | None, str | None]:
    """(best, last): the file of the checkpoint callback that monitors a metric, and of the one
    that keeps the newest epoch (cnnzoo's default callbacks: best.ckpt and last.ckpt)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = last = None
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
            if callback.monitor is not None and best is None:
                best = callback.best_model_path
            elif callback.monitor is None:
                last = callback.best_model_path
    return best, last


def check_monitors(callbacks: Sequence[L.Callback], model: L.LightningModule) -> None:
    """A callback monitoring a metric nobody logs fails before training, not after an epoch."""
    logged = set(getattr(model, "metric_names", ()))
    for callback in callbacks:
        logged |= set(getattr(callback, "metric_names", ()))
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if not logged or monitor is None or monitor in logged:
            continue
        raise UserError(
            f"{type(callback).__name__} monitors {monitor!r}, which is not a metric this run "
            f"logs; choose one of: {', '.join(sorted(logged))}"
        )


def check_input_fits(model: L.LightningModule) -> None:
    """One image through the network before training: a net that needs larger images (timm's
    and torchvision's ImageNet stems on 28 px digits, AlexNet's ImageNet stem) says so in one
    message with the fix."""
    import torch

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
    from cnnzoo.checkpoint import config_targets

    return [target for _, target in config_targets(OmegaConf.to_container(cfg.model))]


def _raise_if_pruned(trainer: L.Trainer) -> None:
    """An Optuna trial stopped by its pruner ends here, on rank 0, as the sweeper expects."""
    callbacks = trainer.callbacks  # type: ignore[attr-defined]  # set at runtime
    reason = next((cb.pruned for cb in callbacks if getattr(cb, "pruned", None)), None)
    if reason is not None and trainer.is_global_zero:
        import optuna

        raise optuna.TrialPruned(reason)


def _resume_plan(cfg: DictConfig, trusted: Sequence[str]) -> ResumePlan | None:
    """The plan made before Hydra composed (``resume_command_line``), or made now: a multirun
    job's ``last`` is its own dir's checkpoint."""
    ckpt_path = cfg.get("ckpt_path")
    if not cfg.get("train") or ckpt_path is None:
        return None
    plan = planned(ckpt_path)
    if plan is not None:
        return plan
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return plan_resume(
        ckpt_path,
        task_dir=Path(cfg.paths.log_dir) / cfg.task_name,
        job_dir=cfg.paths.output_dir if multirun else None,
        trusted=trusted,
    )


def train(cfg: DictConfig, attempt: RunAttempt | None = None) -> dict[str, Any]:
    """Instantiate the datamodule, model, callbacks, loggers and trainer from ``cfg``; fit; test
    the best checkpoint (reloaded from its file, as eval.py reloads it).

    Everything that can be checked is checked before ``attempt.start()`` writes to the run dir:
    the values, the checkpoint against this run's network and optimizer, the monitors, the input
    size, the run dir's lock. Returns the run's record: final metrics and checkpoint paths.
    """
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.utilities import rank_zero_only

    from cnnzoo.config import validate
    from cnnzoo.trackers import finish_wandb_run, instantiate_callbacks, instantiate_loggers

    validate(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    own_attempt = attempt is None
    writer = rank_zero_only.rank == 0  # type: ignore[attr-defined]  # set at runtime
    attempt = attempt or RunAttempt(run_dir, writer=writer)
    trusted = _own_targets(cfg)
    plan = _resume_plan(cfg, trusted)
    for note in plan.notes if plan else ():
        log.info(note)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    with user_errors("data"):
        datamodule: L.LightningDataModule = instantiate(cfg.data)
    log.info("Instantiating model <%s>", cfg.model.net.get("name") or cfg.model.net._target_)
    with user_errors("model"):
        model: L.LightningModule = instantiate(cfg.model, _recursive_=False, _convert_="all")
    if plan is not None:
        start = time.perf_counter()
        check_resumable(plan, cast("ImageClassifier", model))
        log.info(
            "Resuming from %s (epoch %d, step %d; checked in %.2f s)",
            plan.checkpoint,
            plan.epoch,
            plan.step,
            time.perf_counter() - start,
        )
    with user_errors("callbacks"):
        callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(cfg.get("logger")))
    check_monitors(callbacks, model)
    check_input_fits(model)

    try:
        attempt.start()  # from here on, the run dir is this run's
        # resuming in the checkpoint's own run dir: the CSV and TensorBoard logs continue too
        resume_step = plan.step if plan is not None and plan.continues(run_dir) else None
        with user_errors("logger"):
            loggers = instantiate_loggers(
                cfg.get("logger"), run_dir=run_dir, resume_step=resume_step
            )
        with user_errors("trainer"):
            trainer: L.Trainer = instantiate(
                cfg.trainer, callbacks=callbacks, logger=loggers or False, **_plugins(cfg.trainer)
            )
        for logger in trainer.loggers:
            logger.log_hyperparams(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))
        try:
            record = _fit_and_test(cfg, trainer, model, datamodule, plan)
        except BaseException:
            if attempt.record is not None:
                # what the run had when it stopped: its checkpoints, metrics, training time
                attempt.record.update(_stopped_record(run_dir, trainer, model, plan))
            finish_wandb_run(failed=True)
            raise
        finish_wandb_run(failed=False)
        return record
    finally:
        if own_attempt:
            attempt.close()


def _plugins(trainer_cfg: DictConfig) -> dict[str, Any]:
    """The trainer's plugins, when a SLURM job that ``cnnzoo.requeue`` requeues adds to the
    config's (Lightning's cluster environment without its own requeue)."""
    from hydra.utils import instantiate

    from cnnzoo import requeue

    extra = requeue.cluster_plugins(trainer_cfg)
    if not extra:
        return {}
    return {"plugins": [*instantiate(trainer_cfg.get("plugins") or []), *extra]}


def _stopped_record(
    run_dir: Path, trainer: L.Trainer, model: L.LightningModule, plan: ResumePlan | None
) -> dict[str, Any]:
    """The record of a run that stopped (interrupted, failed): the checkpoints on disk (an
    interrupted run's ``last.ckpt`` is at the batch it reached), the last metrics logged and the
    training time so far."""
    best, _ = _checkpoints(trainer)
    last = newest_checkpoint(run_dir)
    record: dict[str, Any] = {
        "best_ckpt": best,
        "last_ckpt": None if last is None else str(last),
        "metrics": _metrics(trainer),
    }
    if plan is not None:
        record["resumed_from"] = str(plan.checkpoint)
    if hasattr(model, "train_time_s"):
        record["train_time_s"] = model.train_time_s
    return {key: value for key, value in record.items() if value not in (None, {})}


def _fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    plan: ResumePlan | None,
) -> dict[str, Any]:
    from cnnzoo.checkpoint import load_classifier
    from cnnzoo.trackers import tracker_links

    record: dict[str, Any] = {"output_dir": cfg.paths.output_dir}
    ckpt_path = None if plan is None else str(plan.checkpoint)
    if ckpt_path:
        record["resumed_from"] = ckpt_path
    start = time.perf_counter()
    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    # the whole training, resumed parts included (the checkpoints carry it); a LightningModule
    # of the user's own: this process's
    record["train_time_s"] = getattr(model, "train_time_s", time.perf_counter() - start)
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


def _attempt_dir(hydra_cfg: Any) -> Path | None:
    """Where Hydra wrote this attempt's record, when it is a resume's (``attempts/<time>``)."""
    subdir = hydra_cfg.output_subdir
    if subdir is None or not str(subdir).startswith(f"{ATTEMPTS_DIR}/"):
        return None
    return Path(hydra_cfg.runtime.output_dir) / Path(str(subdir)).parent


def _same_job(recorded: Sequence[str], overrides: Sequence[str]) -> bool:
    def job(items: Sequence[str]) -> set[str]:
        return set(without_key(items, "ckpt_path"))

    return job(recorded) == job(overrides)


def _rerun_sweep_job(cfg: DictConfig, job_dir: Path, overrides: list[str]) -> dict[str, Any] | None:
    """A sweep run again in its own ``hydra.sweep.dir`` (or a job requeued): a job that
    completed there is skipped (its record returned); one that was interrupted resumes from its
    own checkpoint (``ckpt_path=last``, which in a multirun means the job's own dir)."""
    previous = read_job_summary(job_dir)
    if previous is None:
        return None
    if not _same_job(previous.get("overrides", []), overrides):
        raise UserError(
            f"{job_dir} holds another job's run ({' '.join(previous.get('overrides', []))}): "
            "rerun a sweep with the same overrides, or give it a new hydra.sweep.dir"
        )
    status = previous.get("status")
    if status == Status.COMPLETED:
        log.info("Job %s completed in an earlier run of this sweep: skipped", job_dir.name)
        return previous
    if status in (Status.INTERRUPTED, Status.RUNNING) and cfg.get("ckpt_path") is None:
        found = newest_checkpoint(job_dir)
        if found is not None:
            log.info(
                "Job %s was %s in an earlier run of this sweep: resuming it from its own %s",
                job_dir.name,
                "interrupted" if status == Status.INTERRUPTED else "stopped",
                found.name,
            )
            with open_dict(cfg):
                cfg.ckpt_path = "last"
    return None


def _run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, record the job however it ends, return the optimised metric."""
    from lightning.pytorch.utilities import rank_zero_only

    from cnnzoo import requeue
    from cnnzoo.launch import needs_own_process, run_job_in_child

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    output_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    if multirun:
        done = _rerun_sweep_job(cfg, output_dir, overrides)
        if done is not None:
            write_sweep_summary(hydra_cfg.sweep.dir)
            return _result(cfg, done)
        if needs_own_process(cfg.trainer):
            child = run_job_in_child()
            write_sweep_summary(hydra_cfg.sweep.dir)
            return _result(cfg, child)
    writer = rank_zero_only.rank == 0  # type: ignore[attr-defined]  # set at runtime
    # the attempt's record: written as `running` when it starts; a run that stops adds what it
    # had to it (train's _stopped_record)
    attempt = RunAttempt(
        output_dir, _attempt_dir(hydra_cfg), writer=writer, record={"overrides": overrides}
    )
    error: BaseException | None = None
    try:
        result = train(cfg, attempt)
        outcome = Outcome(Status.COMPLETED)
    except BaseException as caught:
        result = {}
        error = caught
        user_error = as_user_error(caught)
        outcome = requeue.outcome(caught) or outcome_of(user_error or caught)
    record: dict[str, Any] = {**(attempt.record or {}), **result, **outcome.fields}
    try:
        if writer:
            attempt.write_record(record)
            if multirun:
                write_sweep_summary(hydra_cfg.sweep.dir)
    except Exception as unwritten:
        if error is None:
            # trained, but its record says otherwise (or nothing): not a success
            raise UserError(
                f"the run completed, but its record could not be written: {unwritten} "
                f"(its checkpoints are in {output_dir / CHECKPOINT_DIR})"
            ) from unwritten
        # the job's own error is the one to report; this one is logged beside it
        log.error("The job's record could not be written either: %s", unwritten)
    finally:
        attempt.close()
    if error is None:
        return _result(cfg, record)
    if requeue.requested():
        if requeue.requeued():
            raise error  # submitit requeued the job at the signal and ends it with its own code
        requeue.requeue_now()  # the job's checkpoint is saved and recorded: requeue it now
    if outcome.status == Status.INTERRUPTED:
        # 130 / 143, as shells report a process ended by SIGINT / SIGTERM; a sweep stops too
        sys.exit(outcome.exit_code)
    if user_error is not None and user_error is not error:
        raise user_error from error
    raise error


def _result(cfg: DictConfig, record: dict[str, Any]) -> float | None:
    """The job's optimised metric; a job recorded as failed (in a child process) fails here."""
    status = record.get("status")
    if status == Status.PRUNED:
        import optuna

        raise optuna.TrialPruned(record.get("error", ""))
    if status != Status.COMPLETED:
        if status == Status.INTERRUPTED and record.get("exit_code"):
            sys.exit(record["exit_code"])
        raise UserError(f"the job failed: {record.get('error') or 'no record was written'}")
    metric = cfg.get("optimized_metric")
    metrics = record.get("metrics", {})
    if metric and metric not in metrics:
        log.warning("optimized_metric=%s was not logged (logged: %s)", metric, ", ".join(metrics))
    return metrics.get(metric) if metric else None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _main(cfg: DictConfig) -> float | None:
    import torch

    from cnnzoo import requeue

    # here, not in main(): every process that trains runs this function, also a submitit job
    # (its pickled task) and a DDP rank, and none of them shows the messages
    console.quiet_third_party_messages()
    requeue.install_from_environment()  # scripts/slurm/train.sbatch: save and requeue on SIGUSR1

    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
    return _run(cfg)


def main() -> None:
    console.prepare_command_line()
    with console.one_line_errors():
        rewrite_command_line()
    _main()


if __name__ == "__main__":
    main()
