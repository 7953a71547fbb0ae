"""A multirun job that starts processes of its own (DDP) runs as a child process of the sweep.

Lightning starts DDP ranks 1..N-1 by re-running the command line, and watches them: when a rank
fails, its observer SIGKILLs the process that launched them. In a multirun that process is the
sweep itself — one failing job killed the whole sweep and left ranks behind. So the sweep runs
such a job as a child process: ``python train.py <the job's overrides> hydra.run.dir=<job dir>``,
an ordinary single run that launches its own ranks in the job's directory. The sweep waits for it,
reads the ``summary.json`` it wrote, records a failure and goes on to the next job.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_original_cwd, to_absolute_path

from cnnzoo.records import read_job_summary

__all__ = ["job_command", "needs_own_process", "run_job_in_child"]

log = logging.getLogger(__name__)

# hydra.* overrides that describe how the sweep runs rather than the job
_SWEEP_ONLY = (
    "hydra.mode",
    "hydra.launcher",
    "hydra/launcher",
    "hydra.run",
    "hydra.sweep.dir",
    "hydra.job.name",
)
# Hydra's flags that take a value as the next argument
_FLAGS_WITH_VALUE = {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir"}


def needs_own_process(trainer: L.Trainer) -> bool:
    """Whether this multirun job's trainer would start processes (DDP ranks) by itself."""
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return False
    environment = getattr(trainer.strategy, "cluster_environment", None)
    return (
        trainer.world_size > 1
        and environment is not None
        and not environment.creates_processes_externally
    )


def _command_flags(argv: Sequence[str]) -> list[str]:
    """The flags that choose the config (``--config-dir d``, ``-cn x``...), without ``-m``."""
    flags, keep_next = [], False
    for arg in argv:
        if keep_next:
            flags.append(arg)
            keep_next = False
        elif arg in _FLAGS_WITH_VALUE:
            flags.append(arg)
            keep_next = True
        elif arg.startswith("-") and arg not in ("-m", "--multirun"):
            flags.append(arg)
    return flags


def job_command() -> list[str]:
    """The command line that runs this multirun job on its own, in its own directory."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", spec.name]
    hydra_cfg = HydraConfig.get()
    hydra_overrides = [
        override
        for override in hydra_cfg.overrides.hydra
        if not override.lstrip("+~").startswith(_SWEEP_ONLY)
    ]
    return [
        *command,
        *_command_flags(sys.argv[1:]),
        *hydra_cfg.overrides.task,
        *hydra_overrides,
        f"hydra.run.dir={hydra_cfg.runtime.output_dir}",
        # ${hydra:sweep.dir} (the Optuna study's storage) is the sweep's, not a new timestamp
        f"hydra.sweep.dir={hydra_cfg.sweep.dir}",
        # the sweep has written the job's config already
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}",
    ]


def run_job_in_child() -> dict[str, Any]:
    """Run this job as a child process; return the record it wrote in ``summary.json``.

    Ctrl-C and SIGTERM sent to the sweep are passed on to the job, which saves its checkpoint.
    A job that ends without a record (killed) gets one saying how it ended.
    """
    command = job_command()
    output_dir = HydraConfig.get().runtime.output_dir
    log.info("DDP job in its own process: %s", " ".join(command))
    child = subprocess.Popen(command, cwd=get_original_cwd())

    def forward(signum: int, frame: Any) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    record = read_job_summary(output_dir) or {}
    if code != 0 and record.get("status") in (None, "running", "completed"):
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        record.update(status="failed", error=f"the job's process {how}")
    record["exit_code"] = code
    return record
