"""The training side of an Optuna search: report each epoch's validation metric to the trial,
stop the job when the pruner says so, and fail it when the loss is not finite."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["OptunaTrial"]


class OptunaTrial(L.Callback):
    """Connects a training job to its trial in the study's storage (set up by the cnnzoo_optuna
    sweeper, which passes ``trial_number``; without one the callback does nothing).

    ``optuna.TrialPruned`` raised here ends the job; the sweeper records the trial as pruned.
    """

    def __init__(
        self,
        *,
        monitor: str,
        study_name: str,
        storage: str | None,
        sweep_dir: str,
        trial_number: int | None = None,
        pruner: Any = None,
    ) -> None:
        self.monitor = monitor
        self.study_name = study_name
        self.storage = storage or f"sqlite:///{Path(sweep_dir).resolve()}/optuna.db"
        self.trial_number = trial_number
        self.pruner = pruner
        self.trial: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial_number is None:
            return
        import optuna

        study = optuna.load_study(
            study_name=self.study_name, storage=self.storage, pruner=self.pruner
        )
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, self.trial_number
        )
        self.trial = optuna.trial.Trial(study, trial_id)

    def _check_finite(self, trainer: L.Trainer, when: str) -> None:
        loss = trainer.callback_metrics.get("train/loss_epoch")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(f"the training loss is {float(loss)} {when}")

    # The module logs the epoch's loss in its own on_train_epoch_end, which Lightning calls after
    # this callback's: the loss is checked before the next epoch trains, and at the end.
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._check_finite(trainer, f"at epoch {trainer.current_epoch - 1}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_finite(trainer, "at the end of training")

    # on_validation_end, not on_validation_epoch_end: Lightning calls the module's epoch-end hook,
    # which logs the epoch's metrics, after the callbacks' one
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial is None or trainer.sanity_checking:
            return
        import optuna

        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.pruner is not None and self.trial.should_prune():
            raise optuna.TrialPruned(
                f"{self.monitor}={float(value):.4f} at epoch {trainer.current_epoch}"
            )
