"""The training side of an Optuna search: report each epoch's validation metric to the trial and
stop the job when the pruner says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["OptunaTrial"]


class OptunaTrial(L.Callback):
    """Connects a training job to its trial in the study's storage (set up by the cnnzoo_optuna
    sweeper, which passes ``trial_number``; without one the callback does nothing).

    Only the global-rank-0 process talks to the study: in a DDP trial it reports the metric,
    asks the pruner, and broadcasts the decision, so that every process stops after the same
    epoch. A pruned job stops training (``trainer.should_stop``) and keeps the reason in
    ``pruned``; the training entry point then ends the job with ``optuna.TrialPruned``, which the
    sweeper records as a pruned trial. A diverging trial is stopped by the ``FiniteLoss``
    callback and recorded as failed.
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
        self.pruned: str | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial_number is None or not trainer.is_global_zero:
            return
        import optuna

        # the storage's interface is Optuna's public API for workers outside the study's process
        storage = optuna.storages.get_storage(self.storage)
        study_id = storage.get_study_id_from_name(self.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=self.pruner)
        self.trial = optuna.trial.Trial(study, trial_id)

    # on_validation_end, not on_validation_epoch_end: Lightning calls the module's epoch-end hook,
    # which logs the epoch's metrics, after the callbacks' one
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial_number is None or trainer.sanity_checking:
            return
        reason = None
        if self.trial is not None:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:
                epoch = trainer.current_epoch
                self.trial.report(float(value), step=epoch)
                if self.pruner is not None and self.trial.should_prune():
                    reason = f"{self.monitor}={float(value):.4f} at epoch {epoch}"
        reason = trainer.strategy.broadcast(reason, src=0)
        if reason is not None:
            self.pruned = reason
            trainer.should_stop = True
