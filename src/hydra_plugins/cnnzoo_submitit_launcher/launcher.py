"""Hydra's submitit launchers (``hydra/launcher=slurm``, ``hydra/launcher=local``), whose
requeued jobs resume from their own checkpoint instead of training again from scratch.

A job is requeued by submitit at SLURM's pre-emption / time-limit signal (``checkpoint()``: the
job resubmits itself), or by SLURM itself (``scontrol requeue``, a pre-emption that sends SIGTERM
only: ``SLURM_RESTART_COUNT`` > 0). Either way it runs again with ``ckpt_path=last`` — in a
multirun, the job's own dir's newest checkpoint (``cnnzoo.resume``) — and says so in its log.
What the job does at the signal (save, then requeue): ``cnnzoo.requeue``.

The configs (``configs/hydra/launcher/slurm.yaml``, ``local.yaml``) extend submitit's
(``submitit_slurm``, ``submitit_local``) and name these classes as their ``_target_``.
"""

import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence  # noqa: UP035  (Hydra's launcher signature)

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, setup_globals
from omegaconf import open_dict

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # the `slurm` extra is not installed: `hydra/launcher=slurm` asks for it
    submitit_launcher = None

__all__ = ["LocalLauncher", "SlurmLauncher"]

log = logging.getLogger(__name__)


def _ckpt_path(overrides: Sequence[str]) -> str | None:
    from cnnzoo.records import override_key

    values = [o.split("=", 1)[1] for o in overrides if override_key(o) == "ckpt_path"]
    return values[-1] if values else None


class ResumeOnRequeue:
    """Mixed into submitit's launchers: the job's overrides get ``ckpt_path=last`` when it is
    requeued (the methods below run inside the job)."""

    def __call__(
        self,
        sweep_overrides: List[str],  # noqa: UP006
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: Dict[type, Singleton],  # noqa: UP006
    ) -> JobReturn:
        from cnnzoo import requeue

        requeue.install()
        # submitit prints its lines itself: once in the job's log, not again through Hydra's
        logging.getLogger("submitit").propagate = False
        restarts = requeue.restarts()
        if restarts and _ckpt_path(sweep_overrides) != "last":
            Singleton.set_state(singleton_state)
            setup_globals()
            sweep_overrides = self._resume(
                sweep_overrides, job_num, f"requeued by SLURM (restart {restarts})"
            )
        return super().__call__(  # type: ignore[misc]
            sweep_overrides, job_dir_key, job_num, job_id, singleton_state
        )

    def checkpoint(
        self,
        sweep_overrides: List[str],  # noqa: UP006
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: Dict[type, Singleton],  # noqa: UP006
    ) -> Any:
        """submitit calls this at the signal, before it requeues the job: the resubmission."""
        overrides = self._resume(sweep_overrides, job_num, "requeued")
        return super().checkpoint(  # type: ignore[misc]
            overrides, job_dir_key, job_num, job_id, singleton_state
        )

    def _resume(self, overrides: Sequence[str], job_num: int, why: str) -> List[str]:  # noqa: UP006
        """The job's overrides with ``ckpt_path=last``: its own newest checkpoint. A job that
        has none yet (stopped before its first step) starts again as it was submitted, from
        the checkpoint file it was given, if any."""
        from cnnzoo.records import without_key
        from cnnzoo.resume import newest_checkpoint

        job_dir = self._job_dir(overrides, job_num)
        found = newest_checkpoint(job_dir)
        if found is None:
            log.warning(
                "%s: job %d has no checkpoint of its own yet (%s): it starts again",
                why,
                job_num,
                job_dir,
            )
            return list(overrides)
        log.warning("%s: resuming job %d from its own checkpoint (%s)", why, job_num, found)
        return [*without_key(overrides, "ckpt_path"), "ckpt_path=last"]

    def _job_dir(self, overrides: Sequence[str], job_num: int) -> Path:
        """The job's output dir, as Hydra's ``run_job`` names it."""
        context, config = self.hydra_context, self.config  # type: ignore[attr-defined]
        sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config.hydra.job):
            sweep_config.hydra.job.num = job_num
        return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


if submitit_launcher is not None:

    class SlurmLauncher(ResumeOnRequeue, submitit_launcher.SlurmLauncher):
        """``hydra/launcher=slurm``: every job a SLURM job (an array task)."""

    class LocalLauncher(ResumeOnRequeue, submitit_launcher.LocalLauncher):
        """``hydra/launcher=local``: every job a local process, as submitit runs SLURM's."""
