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
import os
import signal
import subprocess
import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_original_cwd, to_absolute_path
from omegaconf import DictConfig

from cnnzoo.records import Status, override_key, read_job_summary
from cnnzoo.resume import split_command_line

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


# Replaces building a Trainer to count its processes: Lightning's reading of `devices`, checked
# against it (lightning 2.6.6; tests/test_upstream.py::
# test_lightning_counts_a_trainers_processes_as_launch_does)
def _device_count(trainer: DictConfig) -> int:
    """How many devices per node ``trainer.devices`` asks for (Lightning's meaning of it)."""
    devices = trainer.get("devices", "auto")
    accelerator = str(trainer.get("accelerator", "auto"))
    if isinstance(devices, int) and devices >= 0:
        return devices
    if not isinstance(devices, (int, str)):
        return len(devices)  # a list of device indices
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if str(devices) not in ("auto", "-1"):
        return int(devices)
    if accelerator == "cpu":
        return 1
    import torch

    return max(torch.cuda.device_count(), 1)  # "auto" and -1: every GPU, or the CPU


def needs_own_process(trainer: DictConfig) -> bool:
    """Whether this multirun job's trainer (its config) would start processes by itself: more
    than one device per node or several nodes, with no launcher (torchrun, SLURM's srun) that
    started the ranks already — Lightning's own environment checks."""
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return False
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if "LOCAL_RANK" in os.environ or TorchElasticEnvironment.detect() or SLURMEnvironment.detect():
        return False
    return _device_count(trainer) * int(trainer.get("num_nodes", 1)) > 1


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
        if not override_key(override).startswith(_SWEEP_ONLY)
    ]
    return [
        *command,
        # the flags that choose the config (--config-dir d, -cn x...), without -m
        *(f for f in split_command_line(sys.argv[1:])[0] if f not in ("-m", "--multirun")),
        *hydra_cfg.overrides.task,
        *hydra_overrides,
        f"hydra.run.dir={hydra_cfg.runtime.output_dir}",
        # ${hydra:sweep.dir} (the Optuna study's storage) is the sweep's, not a new timestamp
        f"hydra.sweep.dir={hydra_cfg.sweep.dir}",
        # the sweep has written the job's config already
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}",
    ]


# Workaround: Lightning's DDP observer SIGKILLs the process that launched a failed rank
# (measured on lightning 2.6.6; tests/test_upstream.py::
# test_lightnings_ddp_observer_sigkills_the_process_that_launched_a_failed_rank)
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
    if code != 0 and record.get("status") in (None, Status.RUNNING, Status.COMPLETED):
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        record.update(status=Status.FAILED, error=f"the job's process {how}")
    record["exit_code"] = code
    return record
