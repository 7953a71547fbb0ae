"""A sweep job on SLURM that is pre-empted or reaches its time limit resumes; it never restarts.

The jobs of ``hydra/launcher=slurm`` (and ``local``) run under submitit, whose signal (SIGUSR2:
``--signal=USR2@<signal_delay_s>`` before the time limit, and at a pre-emption on clusters that
send the job's signal first) warns a job before SLURM ends it. What happens then, in order:

1. ``_on_signal`` notes it. During training (``InterruptCheckpoint`` says a fit is running) the
   batch in progress completes;
2. before the next batch, training stops on every rank (``stop_training``) and
   ``InterruptCheckpoint`` saves ``checkpoints/last.ckpt`` at the step reached: the job's newest
   checkpoint;
3. ``cnnzoo.train`` writes the job's record: ``interrupted``, the reason below;
4. ``requeue_now``: submitit's own handler calls the launcher's ``checkpoint()``, which resubmits
   the job with ``ckpt_path=last`` (in a multirun: the job's own newest checkpoint), requeues it
   (``scontrol requeue``) and exits;
5. the requeued job resumes from that checkpoint in its own dir and continues its record (one CSV,
   one TensorBoard log, the same W&B run, ``resumed_from`` in its ``summary.json``).

Outside training (setup, testing) there is no step to finish: the job is requeued at once and
resumes from its newest checkpoint.

A pre-emption on SLURM itself (``PreemptMode=REQUEUE``) sends SIGTERM, not the job's signal:
Lightning stops training at the next batch and ``InterruptCheckpoint`` saves ``last.ckpt``.
Without a ``GraceTime`` (or on ``scontrol requeue``) SLURM requeues the job, and the launcher
resumes it (``SLURM_RESTART_COUNT``); with one, SLURM requeues only a job still running when the
grace ends, so a job that saved and stopped requeues itself as above (``outcome``).

Exactly one mechanism saves and requeues: in these jobs Lightning's own SLURM auto-requeue (its
SIGUSR1 handler, ``hpc_ckpt_<n>.ckpt``) is switched off (``cluster_plugins``).
``scripts/slurm/train.sbatch`` runs without submitit and keeps Lightning's.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from cnnzoo.records import SIGTERM_EXIT, Outcome, Status, outcome_of

__all__ = [
    "cluster_plugins",
    "install",
    "installed",
    "outcome",
    "requested",
    "requeue_now",
    "requeued",
    "restarts",
    "stop_training",
    "training",
]

log = logging.getLogger(__name__)

_Handler = Callable[[int, FrameType | None], Any]


class _State:
    """This process's view of the signal: one job per process, so module state."""

    handler: _Handler | None = None  # submitit's, which requeues
    signal: tuple[int, FrameType | None] | None = None
    training = False
    requeued = False


_state = _State()


def install() -> None:
    """In a submitit job (the launcher calls this before the task runs): submitit's
    pre-emption / time-limit signal goes through ``_on_signal`` first."""
    from submitit import JobEnvironment

    signum = getattr(signal, f"SIG{JobEnvironment.USR_SIG}")
    handler = signal.getsignal(signum)
    if not callable(handler) or handler is _on_signal:
        return
    _state.handler = handler
    signal.signal(signum, _on_signal)


def installed() -> bool:
    return _state.handler is not None


def restarts() -> int:
    """How many times SLURM has requeued this job (0 outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    first = _state.signal is None
    _state.signal = (signum, frame)
    if _state.training:
        if first:
            log.warning(
                "%s (SLURM pre-emption or time limit): saving a checkpoint at the end of this "
                "batch, then requeuing the job to resume from it",
                name,
            )
        return
    log.warning("%s (SLURM pre-emption or time limit) outside training: requeuing the job", name)
    requeue_now()


def requested() -> bool:
    """Whether the pre-emption / time-limit signal came."""
    return _state.signal is not None


def requeued() -> bool:
    return _state.requeued


def requeue_now() -> None:
    """Let submitit requeue the job: the launcher's ``checkpoint()`` (``ckpt_path=last``), then
    ``scontrol requeue`` and exit (on global rank 0; on the other ranks this returns)."""
    if _state.requeued or _state.handler is None or _state.signal is None:
        return
    _state.requeued = True
    _state.handler(*_state.signal)


def training(running: bool) -> None:
    """``InterruptCheckpoint`` says whether a fit's training loop is running (the signal then
    waits for the batch in progress)."""
    _state.training = running


def stop_training(trainer: Any) -> bool:
    """Before a training batch: whether the signal came, on any rank (every rank stops at the
    same batch, so the checkpoint saved next is one step of all of them)."""
    if not installed():
        return False
    stop = requested()
    if trainer.world_size > 1:
        stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
    return stop


def outcome(error: BaseException) -> Outcome | None:
    """How the record of a job stopped for requeuing reads, if it was: by the signal, or by
    the SIGTERM of a pre-emption that leaves the job running for the partition's GraceTime
    (a job that ends by itself then is not requeued by SLURM, so it requeues itself)."""
    if not requested() and _preempted(error):
        log.warning("SIGTERM: this job is pre-empted; requeuing it to resume from its checkpoint")
        _state.signal = (signal.SIGTERM, None)
    if not requested():
        return None
    return Outcome(
        Status.INTERRUPTED,
        SIGTERM_EXIT,
        "stopped by SLURM (pre-emption or time limit) and requeued: it resumes from its own "
        "newest checkpoint",
    )


def _preempted(error: BaseException) -> bool:
    """Whether ``error`` is Lightning's stop at SIGTERM in a SLURM job that SLURM has chosen to
    pre-empt and still runs (not a ``scancel``: that job is no longer running)."""
    if not installed() or "SLURM_JOB_ID" not in os.environ:
        return False
    if outcome_of(error).exit_code != SIGTERM_EXIT:
        return False
    import subprocess

    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", os.environ["SLURM_JOB_ID"]],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as problem:
        log.warning("Could not ask SLURM whether this job is pre-empted: %s", problem)
        return False
    fields = dict(field.partition("=")[::2] for field in shown.split())
    return fields.get("JobState") == "RUNNING" and fields.get("PreemptTime", "None") != "None"


def cluster_plugins(trainer_cfg: Any) -> list[Any]:
    """Trainer plugins beyond the config's: in a submitit job on SLURM, Lightning's cluster
    environment without its SIGUSR1 auto-requeue (submitit's signal does it, above) — unless
    the trainer config names a cluster environment itself."""
    if not installed() or os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return []
    named = [str(p.get("_target_", "")) for p in trainer_cfg.get("plugins") or []]
    if any(target.endswith("Environment") for target in named):
        return []
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=False)]
