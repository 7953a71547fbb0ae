"""What the trackers' dashboards need beyond the logged metrics: W&B's axes and summaries, the
first training batch, checkpoints as W&B artifacts, TensorBoard's HPARAMS tab (where a run's
dashboards are: ``cnnzoo.trackers.tracker_links``)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from cnnzoo import plots
from cnnzoo.callbacks.images import class_names, displayable, log_image_file
from cnnzoo.records import override_key
from cnnzoo.trackers import best_effort

__all__ = ["Dashboard"]

log = logging.getLogger(__name__)

# metrics logged once an epoch: W&B plots them against `epoch`, so runs with different batch
# sizes (a different number of steps an epoch) line up
EPOCH_METRICS = (
    "train/loss_epoch",
    "train/acc",
    "train/acc_top5",
    "train/images_per_s",
    "train/gpu_mem_gb",
    "val/*",
    "test/*",
)
# the summary a run's row shows in W&B's runs table: the best epoch's value, not the last
SUMMARIES = {"val/acc": "max", "val/loss": "min"}
# Workaround: Lightning's WandbLogger puts every metric on this axis through the glob ``*``, which
# W&B's UI was seen to match like a file path, not across a ``/`` (measured on lightning 2.6.6;
# tests/test_upstream.py::
# test_lightnings_wandb_logger_puts_every_metric_on_the_global_step_through_a_glob).
# W&B's client (wandb 0.31.0) does match ``train/loss_step`` to ``*`` (its step_sync fills the
# axis in); the UI's matching cannot be checked offline, so the explicit axis stays.
STEP_METRIC = "trainer/global_step"
FINAL_PREFIX = "final/"
# TensorBoard's HPARAMS tab: the settings a sweep usually compares (and whatever the job's
# overrides set), not the ~140 values of the whole config — those stay in hparams.yaml
HPARAMS_TAB = (
    "seed",
    "data/_target_",
    "data/batch_size",
    "data/image_size",
    "data/augment",
    "data/mixup_alpha",
    "data/cutmix_alpha",
    "model/net/name",
    "model/net/weights",
    "model/optimizer/_target_",
    "model/optimizer/lr",
    "model/optimizer/weight_decay",
    "model/scheduler/_target_",
    "model/label_smoothing",
    "trainer/max_epochs",
    "trainer/precision",
    "trainer/accumulate_grad_batches",
    "model/params",
    "model/flops",
)


def _wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


class Dashboard(L.Callback):
    """Fills the trackers' dashboards.

    - **W&B metric definitions** (when fitting or testing starts): the epoch-level metrics
      (``EPOCH_METRICS``) are plotted against ``epoch``, ``train/loss_step`` against
      ``trainer/global_step``; the run summary holds the best ``val/acc`` (max) and ``val/loss``
      (min).
    - **The first training batch** as the model receives it (after augmentation and MixUp /
      CutMix; the datamodule's normalisation undone; a mixed image is captioned with its two
      strongest classes), once, when fitting starts: ``<dirpath>/train_batch.png`` and the image
      ``train/batch`` in TensorBoard and W&B.
    - **Checkpoints as W&B artifacts** (``model-<run id>``, type ``model``), offline too:
      ``log_model=True`` logs ``best.ckpt`` (alias ``best``) and ``last.ckpt`` (alias
      ``latest``) once, at the end of fitting; ``log_model="all"`` logs every checkpoint file
      that changed, after each training epoch.
    - **TensorBoard's HPARAMS tab**: the run's settings a sweep compares (``HPARAMS_TAB``, and
      every key the job's overrides set), with the final metrics as ``final/<metric>``, once at
      the end of the run: after testing when ``test_after_fit`` (the entry point tests after
      fitting), else at the end of fitting.
    """

    def __init__(
        self,
        *,
        dirpath: str | None = None,
        log_model: bool | str = False,
        test_after_fit: bool = True,
        batch_images: int = 32,
    ) -> None:
        if log_model not in (False, True, "all"):
            raise ValueError(f"log_model must be false, true or 'all', got {log_model!r}")
        self.dirpath = dirpath
        self.log_model = log_model
        self.test_after_fit = test_after_fit
        self.batch_images = batch_images
        self._metrics_defined = False
        self._batch_shown = False
        self._logged_checkpoints: dict[str, float] = {}
        self._fit_metrics: dict[str, float] = {}

    # -- W&B metric definitions -------------------------------------------------------------------

    @rank_zero_only
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._metrics_defined:
            return
        for logger in _wandb_loggers(trainer):
            with best_effort("W&B", "its metric definitions"):
                run = logger.experiment
                run.define_metric("epoch")
                for name in EPOCH_METRICS:
                    run.define_metric(name, step_metric="epoch")
                for name, summary in SUMMARIES.items():
                    run.define_metric(name, step_metric="epoch", summary=summary)
                run.define_metric("train/loss_step", step_metric=STEP_METRIC)
        self._metrics_defined = True

    # -- the first training batch -----------------------------------------------------------------

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._batch_shown:
            return
        self._batch_shown = True
        images = batch[0]
        if trainer.is_global_zero and self.batch_images > 0 and images.ndim == 4:
            self._show_batch(trainer, images[: self.batch_images], batch[1][: self.batch_images])

    def _show_batch(self, trainer: L.Trainer, images: Any, targets: Any) -> None:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set at runtime
        known = getattr(datamodule, "class_names", None)
        num_classes = len(known) if known else targets.shape[1] if targets.ndim > 1 else None
        names = class_names(trainer, num_classes or int(targets.max()) + 1)
        captions = [plots.target_caption(t, names) for t in targets.detach().float().cpu().numpy()]
        setting = [f"augment={getattr(datamodule, 'augment', 'none')}"]
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(datamodule, name, 0):
                setting.append(f"{name}={getattr(datamodule, name)}")
        figure = plots.image_grid_figure(
            displayable(trainer, images),
            captions,
            title=f"First training batch, as the model sees it ({', '.join(setting)})",
        )
        out = Path(self.dirpath or trainer.default_root_dir)
        path = plots.save(figure, out / "train_batch.png")
        log_image_file(trainer, "train/batch", path)

    # -- checkpoints as W&B artifacts -------------------------------------------------------------

    def _checkpoint_files(self, trainer: L.Trainer) -> dict[str, dict[str, Any]]:
        """Checkpoint file -> its aliases and metadata: a monitored callback's best file is
        ``best`` (with its score); the newest file of every callback (``save_last``, or what an
        unmonitored one keeps) is ``latest``."""
        files: dict[str, dict[str, Any]] = {}

        def add(path: str, alias: str, **metadata: Any) -> None:
            entry = files.setdefault(path, {"aliases": [], "metadata": {"file": Path(path).name}})
            entry["aliases"].append(alias)
            entry["metadata"].update(metadata)

        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint):
                continue
            if callback.monitor is not None and callback.best_model_path:
                score = callback.best_model_score
                add(
                    callback.best_model_path,
                    "best",
                    monitor=callback.monitor,
                    score=None if score is None else float(score),
                )
            newest = callback.last_model_path or (
                callback.best_model_path if callback.monitor is None else ""
            )
            if newest:
                add(newest, "latest")
        return files

    @rank_zero_only
    def _log_checkpoints(self, trainer: L.Trainer) -> None:
        import wandb

        for logger in _wandb_loggers(trainer):
            run = logger.experiment
            for file, entry in self._checkpoint_files(trainer).items():
                path = Path(file)
                if not path.is_file() or self._logged_checkpoints.get(file) == path.stat().st_mtime:
                    continue
                with best_effort("W&B", f"the artifact of {path.name}"):
                    artifact = wandb.Artifact(
                        name=f"model-{run.id}", type="model", metadata=entry["metadata"]
                    )
                    # copied when logged (to W&B's staging folder): last.ckpt is overwritten
                    # while the upload may still wait
                    artifact.add_file(str(path), name=path.name, policy="mutable")
                    run.log_artifact(artifact, aliases=entry["aliases"])
                # not retried at every epoch when W&B cannot take it
                self._logged_checkpoints[file] = path.stat().st_mtime

    # log_model="all": the checkpoints saved after validation are there at the training epoch's
    # end; those saved at its end (last.ckpt) come after this callback's hook (checkpoint
    # callbacks run last), so they are logged when the next epoch starts, or when fitting ends
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.log_model == "all":
            self._log_checkpoints(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.log_model == "all":
            self._log_checkpoints(trainer)

    # -- the end of the run -----------------------------------------------------------------------

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.log_model:
            self._log_checkpoints(trainer)
        # testing starts with fresh callback metrics: keep the fit's for the final record
        self._fit_metrics = _scalars(trainer.callback_metrics)
        if not self.test_after_fit:
            self._log_hparams(trainer, self._fit_metrics)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_hparams(trainer, {**self._fit_metrics, **_scalars(trainer.callback_metrics)})

    @rank_zero_only
    def _log_hparams(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        """TensorBoard's HPARAMS tab: the run's hyperparameters against its final metrics.

        Lightning flattens the (nested) hyperparameters to ``a/b/c`` keys with scalar or string
        values. The selection is passed as a config, which the logger merges into the
        hyperparameters it already holds (``hparams.yaml`` keeps the whole config). The metrics
        get their own tags (``final/...``): logging them under their own names would add a point
        at the end of each metric's curve."""
        final = {f"{FINAL_PREFIX}{name}": value for name, value in metrics.items()}
        keys = {*HPARAMS_TAB, *_overridden_keys()}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and final:
                shown = OmegaConf.create(_select(dict(logger.hparams), keys))
                with best_effort("TensorBoard", "the HPARAMS tab"):
                    # typed dict | Namespace, but Lightning merges a config into its hparams
                    logger.log_hyperparams(
                        shown,  # type: ignore[arg-type]
                        metrics=final,
                        step=trainer.global_step,
                    )


def _select(params: dict[str, Any], keys: set[str], prefix: str = "") -> dict[str, Any]:
    """The entries of nested ``params`` whose ``a/b/c`` path is in ``keys``, nested as they
    were."""
    selected: dict[str, Any] = {}
    for name, value in params.items():
        path = f"{prefix}{name}"
        if path in keys:
            selected[name] = value
        elif isinstance(value, dict | DictConfig):
            inner = _select(dict(value), keys, f"{path}/")
            if inner:
                selected[name] = inner
    return selected


def _overridden_keys() -> list[str]:
    """The ``a/b/c`` paths the job's command-line overrides set (``model.optimizer.lr=0.01``;
    not group choices such as ``model=resnet18``, whose values are configs)."""
    if not HydraConfig.initialized():
        return []
    keys = []
    for override in HydraConfig.get().overrides.task:
        key = override_key(override)
        if "." in key:
            keys.append(key.replace(".", "/"))
    return keys


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    values = {name: float(value) for name, value in metrics.items()}
    return {name: value for name, value in sorted(values.items()) if math.isfinite(value)}
