"""DDP under Hydra: where the extra processes start, and one clean process group per job.

Lightning's subprocess launcher starts ranks 1..N-1 by re-running the command line
(``_hydra_subprocess_cmd``). Under a multirun that command still holds ``-m`` and the sweep, so each
child would start a sweep of its own in new directories, and ``hydra.run.dir`` names a fresh
timestamp rather than the job's directory. The command built here is the *job's* command: the
job's own overrides (``seed=2``, not ``seed=1,2``), run mode, and the job's output directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd, to_absolute_path
from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
from lightning.pytorch.strategies.launchers import subprocess_script as pytorch_launcher

__all__ = ["distributed_job", "hydra_job_command", "use_hydra_job_command"]

# hydra.* overrides that describe the sweep itself rather than the job
_SWEEP_KEYS = ("hydra.mode", "hydra.sweep", "hydra.run", "hydra.launcher", "hydra.sweeper")
_SWEEP_GROUPS = ("hydra/launcher", "hydra/sweeper")


def _is_sweep_override(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key.startswith(_SWEEP_KEYS) or key.startswith(_SWEEP_GROUPS)


def hydra_job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command line and working directory that re-run this Hydra job as rank ``local_rank``."""
    import __main__

    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    # keep the flags that choose the config (--config-name, -cp, ...); drop -m and every override
    flags = [arg for arg in sys.argv[1:] if arg.startswith("-") and arg not in ("-m", "--multirun")]
    hydra_cfg = HydraConfig.get()
    hydra_overrides = [o for o in hydra_cfg.overrides.hydra if not _is_sweep_override(o)]
    command += [*flags, *hydra_cfg.overrides.task, *hydra_overrides]
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        # one config record per job: rank 0's
        "hydra.output_subdir=null",
        # each rank logs to its own <job name>.log in the job's directory
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
    ]
    return command, get_original_cwd()


def use_hydra_job_command() -> None:
    """Make Lightning's subprocess launcher start DDP ranks with :func:`hydra_job_command`."""
    fabric_launcher._hydra_subprocess_cmd = hydra_job_command
    pytorch_launcher._hydra_subprocess_cmd = hydra_job_command


# what Lightning's launcher writes into the launching process's environment
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def distributed_job() -> Iterator[None]:
    """One job's DDP run: afterwards the process group is destroyed and the launch variables are
    as before, so the next job of a multirun launches its own ranks (with LOCAL_RANK still set,
    Lightning would take the processes to be started externally and wait for them forever)."""
    before = {name: os.environ.get(name) for name in _LAUNCH_ENV}
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
