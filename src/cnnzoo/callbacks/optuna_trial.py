"""The training side of an Optuna search: report each epoch's validation metric to the trial and
stop the job when the pruner says so."""

from __future__ import annotations

from typing import Any

import lightning as L

from cnnzoo.study import open_storage, study_storage

__all__ = ["OptunaTrial"]


class OptunaTrial(L.Callback):
    """Connects a training job to its trial in the study's storage (set up by the cnnzoo_optuna
    sweeper, which passes ``trial_number``; without one the callback does nothing).

    Only the global-rank-0 process talks to the study: in a DDP trial it reports the metric,
    asks the pruner, and broadcasts the decision, so that every process stops after the same
    epoch. A pruned job stops training (``trainer.should_stop``) and keeps the reason in
    ``pruned``; the training entry point then ends the job with ``optuna.TrialPruned``, which the
    sweeper records as a pruned trial. A diverging trial is stopped by the ``FiniteLoss``
    callback and recorded as failed. A study with several objectives is not pruned (Optuna
    cannot), so nothing is reported.

    A trial that the study has already finished (its search worker stopped and the heartbeat
    failed it: another worker retries it from this job's checkpoint) stops the job with an
    error at the next epoch's end, on every rank.
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
        self.storage = study_storage(sweep_dir, storage)
        self.trial_number = trial_number
        self.pruner = pruner
        self.trial: Any = None
        self.pruned: str | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial_number is None or not trainer.is_global_zero:
            return
        import optuna

        # the storage's interface is Optuna's public API for workers outside the study's process
        storage = open_storage(self.storage)
        study_id = storage.get_study_id_from_name(self.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=self.pruner)
        if len(study.directions) == 1:
            self.trial = optuna.trial.Trial(study, trial_id)

    # on_validation_end, not on_validation_epoch_end: Lightning calls the module's epoch-end hook,
    # which logs the epoch's metrics, after the callbacks' one
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial_number is None or trainer.sanity_checking:
            return
        decision = self._decide(trainer) if self.trial is not None else None
        decision = trainer.strategy.broadcast(decision, src=0)
        if decision is None:
            return
        kind, reason = decision
        if kind == "finished":
            raise RuntimeError(reason)
        self.pruned = reason
        trainer.should_stop = True

    def _decide(self, trainer: L.Trainer) -> tuple[str, str] | None:
        """("pruned", why), ("finished", why) or None: go on."""
        import optuna

        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return None
        epoch = trainer.current_epoch
        try:
            self.trial.report(float(value), step=epoch)
        except optuna.exceptions.UpdateFinishedTrialError:
            return "finished", (
                f"trial {self.trial_number} of the study {self.study_name!r} has been finished "
                "without this job (its search worker stopped sending heartbeats, so the study "
                "failed it and queues it again): this job stops; its checkpoint is resumed by "
                "the retry"
            )
        if self.pruner is not None and self.trial.should_prune():
            return "pruned", f"{self.monitor}={float(value):.4f} at epoch {epoch}"
        return None
