"""A training job on SLURM that is pre-empted or reaches its time limit resumes; it never restarts.

SLURM warns a job before it ends it, with the job's signal (``--signal=<sig>@<seconds>`` before
the time limit): SIGUSR2 for the jobs of ``hydra/launcher=slurm`` (and ``local``), which run under
submitit; SIGUSR1 for ``scripts/slurm/train.sbatch`` (``CNNZOO_REQUEUE_SIGNAL=USR1``). What
happens then, in order:

1. ``_on_signal`` notes it. During training (``InterruptCheckpoint`` says a fit is running) the
   batch in progress completes;
2. after that batch, training stops on every rank (``stop_training``: the ranks agree on the
   batch, then Lightning's own graceful stop) and ``InterruptCheckpoint`` saves
   ``checkpoints/last.ckpt`` at the step reached: the job's newest checkpoint;
3. ``cnnzoo.train`` writes the job's record: ``interrupted``, the reason below;
4. ``requeue_now``: under submitit, submitit's own handler calls the launcher's ``checkpoint()``,
   which resubmits the job with ``ckpt_path=last`` (in a multirun: the job's own newest
   checkpoint), requeues it and exits; under sbatch, global rank 0 runs ``scontrol requeue``;
5. the requeued job resumes from that checkpoint in its own dir and continues its record (one CSV,
   one TensorBoard log, the same W&B run, ``resumed_from`` in its ``summary.json``).

Outside training (setup, testing) there is no step to finish: the job is requeued at once and
resumes from its newest checkpoint.

A pre-emption on SLURM itself (``PreemptMode=REQUEUE``) sends SIGTERM, not the job's signal:
Lightning stops training at the next batch and ``InterruptCheckpoint`` saves ``last.ckpt``.
Without a ``GraceTime`` (or on ``scontrol requeue``) SLURM requeues the job, and the launcher
resumes it (``SLURM_RESTART_COUNT``); with one, SLURM requeues only a job still running when the
grace ends, so a job that saved and stopped requeues itself as above (``outcome``).

Exactly one mechanism saves and requeues: Lightning's own SLURM auto-requeue (its SIGUSR1
handler saves ``hpc_ckpt_<n>.ckpt`` inside the signal handler, which deadlocks DDP ranks caught at
different points) is switched off wherever this one is installed (``cluster_plugins``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from cnnzoo.errors import UserError
from cnnzoo.records import SIGTERM_EXIT, Outcome, Status, outcome_of

__all__ = [
    "REQUEUE_SIGNAL_ENV",
    "cluster_plugins",
    "install",
    "install_from_environment",
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


# scripts/slurm/train.sbatch: the signal (SLURM's --signal) that saves and requeues the job
REQUEUE_SIGNAL_ENV = "CNNZOO_REQUEUE_SIGNAL"


class _State:
    """This process's view of the signal: one job per process, so module state."""

    handler: _Handler | None = None  # what requeues: submitit's handler, or scontrol
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
    if callable(handler) and handler is not _on_signal:
        _wrap(signum, handler)


def install_from_environment() -> None:
    """In a SLURM job that asks for it (``CNNZOO_REQUEUE_SIGNAL=USR1``, as
    ``scripts/slurm/train.sbatch`` does): that signal saves, then ``scontrol requeue``s the job.
    Nothing when a launcher installed submitit's already, or outside SLURM."""
    name = os.environ.get(REQUEUE_SIGNAL_ENV)
    if not name or installed() or "SLURM_JOB_ID" not in os.environ:
        return
    signum = getattr(signal, f"SIG{name.upper().removeprefix('SIG')}", None)
    if signum is None:
        raise UserError(f"{REQUEUE_SIGNAL_ENV}={name}: not a signal (e.g. USR1)")
    _wrap(signum, _scontrol_requeue)


def _wrap(signum: int, handler: _Handler) -> None:
    _state.handler = handler
    signal.signal(signum, _on_signal)


def _scontrol_requeue(signum: int, frame: FrameType | None) -> None:
    """Requeue this SLURM job (from global rank 0; SLURM then ends every rank)."""
    if int(os.environ.get("SLURM_PROCID", "0")) != 0:
        return
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    import subprocess

    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if done.returncode != 0:
        log.error("scontrol requeue %s failed: %s", job, (done.stderr or done.stdout).strip())
    else:
        log.warning("Requeued SLURM job %s: it resumes from its newest checkpoint", job)


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
                "%s (SLURM pre-emption or time limit): saving a checkpoint after this batch, "
                "then requeuing the job to resume from it",
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
    """Requeue the job, once: submitit's handler (the launcher's ``checkpoint()`` with
    ``ckpt_path=last``, ``scontrol requeue``, exit) or ``scontrol requeue``; on global rank 0,
    on the other ranks this returns."""
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


# Workaround: Lightning's SLURM auto-requeue saves its checkpoint inside its SIGUSR1 handler,
# wherever the signal catches each rank: DDP ranks caught at different points hung in the save's
# collectives (2 of 2 tries, sbatch with 2 CPU ranks; measured on lightning 2.6.6;
# tests/test_upstream.py::test_lightnings_slurm_requeue_saves_inside_its_signal_handler)
def cluster_plugins(trainer_cfg: Any) -> list[Any]:
    """Trainer plugins beyond the config's: in a SLURM job where this module requeues,
    Lightning's cluster environment without its SIGUSR1 auto-requeue — unless the trainer config
    names a cluster environment itself."""
    if not installed():
        return []
    named = [str(p.get("_target_", "")) for p in trainer_cfg.get("plugins") or []]
    if any(target.endswith("Environment") for target in named):
        return []
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=False)]
