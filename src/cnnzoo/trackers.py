"""Instantiate the callback and logger groups (name -> ``_target_`` node); trackers' run identity
and where a run's dashboards are (``tracker_links``).

A run resumed in its own directory continues its trackers' records: the W&B run whose id is kept
in ``<run dir>/wandb_run_id`` (same id, ``resume="allow"``), the CSV log's ``metrics.csv`` and
the TensorBoard log's folder (their newest ``version_<n>``), from the checkpoint's step on.
"""

from __future__ import annotations

import csv
import errno
import logging
import netrc
import os
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnzoo.console import require_extra
from cnnzoo.errors import UserError
from cnnzoo.records import write_failure

__all__ = [
    "WANDB_ID_FILE",
    "best_effort",
    "finish_wandb_run",
    "instantiate_callbacks",
    "instantiate_loggers",
    "run_identity",
    "tracker_links",
]

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id"
# logger class name -> (module it needs, the cnnzoo extra that installs it)
LOGGER_EXTRAS = {
    "WandbLogger": ("wandb", "wandb"),
    "TensorBoardLogger": ("tensorboard", "tensorboard"),
}


@contextmanager
def best_effort(tracker: str, what: str) -> Iterator[None]:
    """A tracker that cannot write (W&B's staging folder under a read-only HOME, a full disk)
    loses ``what`` with a warning; the run goes on, and its own files keep everything."""
    try:
        yield
    except Exception as error:
        # the tracker's own words: W&B's say which variable moves its folder
        lines = str(error).strip().splitlines()
        log.warning(
            "%s could not record %s (%s: %s); the run goes on without it",
            tracker,
            what,
            type(error).__name__,
            lines[0] if lines else write_failure(error),
        )


def _can_write(logger: Logger) -> bool:
    """Whether the folder a logger writes to can be created and written; if not, one warning
    and the run goes on without that logger (an unwritable ``save_dir`` given to TensorBoard)."""
    save_dir = getattr(logger, "save_dir", None)
    if save_dir is None or "://" in str(save_dir):
        return True
    try:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        if not os.access(save_dir, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(save_dir))
    except OSError as error:
        log.warning(
            "%s cannot write to %s (%s): it is off for this run",
            type(logger).__name__,
            save_dir,
            write_failure(error),
        )
        return False
    return True


def _targets(cfg: DictConfig | None, group: str) -> list[DictConfig]:
    if cfg is None:
        return []
    if not isinstance(cfg, DictConfig):
        raise UserError(f"the {group} config must be a mapping of names to _target_ nodes")
    # a node set to null (e.g. `callbacks.rich_progress_bar=null`) switches that entry off
    return [node for node in cfg.values() if isinstance(node, DictConfig) and "_target_" in node]


def instantiate_callbacks(cfg: DictConfig | None, *, has_logger: bool = True) -> list[Callback]:
    callbacks = [instantiate(node) for node in _targets(cfg, "callbacks")]
    if not has_logger:
        # Workaround: LearningRateMonitor raises without a logger (measured on lightning 2.6.6;
        # tests/test_upstream.py::
        # test_lightnings_learning_rate_monitor_refuses_a_trainer_without_loggers)
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    return callbacks


def run_identity() -> tuple[str, str]:
    """(group, name) of this job: in a multirun the sweep dir's name and the job's overrides."""
    if not HydraConfig.initialized():
        return "", ""
    hydra_cfg = HydraConfig.get()
    overrides = ",".join(hydra_cfg.overrides.task) or "defaults"
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return (
            f"{hydra_cfg.job.name}/{hydra_cfg.sweep.dir.rstrip('/').rsplit('/', 1)[-1]}",
            overrides,
        )
    return hydra_cfg.job.name, overrides


def _wandb_credentials_found() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1]
        return netrc.netrc().authenticators(host.split("/")[0]) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _wandb_node(node: DictConfig, run_dir: Path) -> DictConfig:
    """The W&B logger's config for this job: its group and name, and its run id — the one kept
    in the run dir when the run is being resumed there, else a new one (written down)."""
    # Workaround: WandbLogger(offline=True) sets WANDB_MODE=dryrun, W&B's old name for offline
    # (measured on lightning 2.6.6; tests/test_upstream.py::
    # test_lightnings_offline_wandb_logger_sets_wandb_mode_dryrun)
    offline = node.get("offline") or os.environ.get("WANDB_MODE") in (
        "offline",
        "dryrun",
        "disabled",
    )
    if not offline and not _wandb_credentials_found():
        # an online run without credentials would prompt for them; a sweep must never wait
        raise UserError(
            "logger=wandb is online but no W&B credentials were found: run `wandb login` once, "
            "set WANDB_API_KEY, or log offline with logger.wandb.offline=true "
            "(or WANDB_MODE=offline)"
        )
    group, name = run_identity()
    # a DictConfig's container is a dict
    node = OmegaConf.create(cast(dict[str, Any], OmegaConf.to_container(node, resolve=True)))
    id_file = run_dir / WANDB_ID_FILE
    with open_dict(node):
        node.group = node.get("group") or group or None
        node.name = node.get("name") or name or None
        # the Dashboard callback logs the checkpoints (offline too; best and latest).
        # Workaround: WandbLogger refuses log_model offline (measured on lightning 2.6.6;
        # tests/test_upstream.py::test_lightnings_wandb_logger_refuses_to_log_checkpoints_offline)
        node.pop("log_model", None)
        if node.get("id") is None:
            if id_file.is_file():
                node.id = id_file.read_text().strip()
                node.resume = "allow"
            else:
                node.id = secrets.token_hex(4)  # W&B's own format: 8 lowercase hex digits
                _write_text(id_file, node.id)
    return node


@rank_zero_only
def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _newest_version(node: DictConfig) -> int | None:
    """The highest ``version_<n>`` a CSV or TensorBoard logger's node has written, if any."""
    name = node.get("name", "lightning_logs")  # both loggers' default name
    root = Path(node.save_dir) / (name or "")
    matches = (re.fullmatch(r"version_(\d+)", path.name) for path in root.glob("version_*"))
    found = [int(m[1]) for m in matches if m]
    return max(found, default=None)


def csv_before_resume(log_dir: Path) -> Path:
    """Where a resumed run's earlier ``metrics.csv`` waits until the logger has written its rows
    back: beside the version folder (``version_0.before-resume.csv``), which must look empty to
    Lightning's CSV writer."""
    return log_dir.with_name(f"{log_dir.name}.before-resume.csv")


# Workaround: Lightning's CSV writer deletes the metrics.csv of the version it is given (measured
# on lightning 2.6.6; tests/test_upstream.py::
# test_lightnings_csv_logger_deletes_the_metrics_csv_it_finds)
@rank_zero_only
def _set_csv_aside(log_dir: Path) -> None:
    """Lightning's CSV writer deletes the ``metrics.csv`` it finds: move it aside (and drop the
    ``hparams.yaml`` the run rewrites) until ``_write_back`` has logged its rows again."""
    if (log_dir / "metrics.csv").is_file():
        os.replace(log_dir / "metrics.csv", csv_before_resume(log_dir))
    (log_dir / "hparams.yaml").unlink(missing_ok=True)


@rank_zero_only
def _write_back(logger: Logger, log_dir: Path, resume_step: int) -> None:
    """The earlier rows of a resumed run's ``metrics.csv``, up to the checkpoint's step (a
    killed run may have logged past it), logged again and saved at once."""
    aside = csv_before_resume(log_dir)
    if not aside.is_file():
        return
    with open(aside, newline="") as f:
        for row in csv.DictReader(f):
            step = int(row.pop("step"))
            if step < resume_step:
                logger.log_metrics({k: float(v) for k, v in row.items() if v}, step=step)
    logger.save()
    aside.unlink()


def instantiate_loggers(
    cfg: DictConfig | None,
    run_dir: str | Path | None = None,
    *,
    resume_step: int | None = None,
) -> list[Logger]:
    """The loggers of the ``logger`` group. ``resume_step``: the global step of the checkpoint a
    run resumes from in its own ``run_dir`` — its CSV and TensorBoard logs continue their newest
    version from that step (TensorBoard's ``purge_step`` hides what a killed run logged past
    it; the CSV keeps the rows before it)."""
    loggers = []
    for node in _targets(cfg, "logger"):
        kind = str(node._target_).rsplit(".", 1)[-1]
        if kind in LOGGER_EXTRAS:
            module, extra = LOGGER_EXTRAS[kind]
            require_extra(module, extra, f"logger={extra}")
        if kind == "WandbLogger":
            node = _wandb_node(node, Path(run_dir or "."))
        version = None
        if resume_step is not None and kind in ("CSVLogger", "TensorBoardLogger"):
            version = None if node.get("version") is not None else _newest_version(node)
        if version is not None:
            node = node.copy()
            with open_dict(node):
                node.version = version
                if kind == "TensorBoardLogger":
                    node.purge_step = resume_step
        logger = instantiate(node)
        if not _can_write(logger):
            continue
        if version is not None and kind == "CSVLogger":
            assert resume_step is not None and logger.log_dir is not None
            _set_csv_aside(Path(logger.log_dir))
            _write_back(logger, Path(logger.log_dir), resume_step)
        loggers.append(logger)
    return loggers


# Workaround: a new WandbLogger attaches to the W&B run still open in the process (measured on
# lightning 2.6.6; tests/test_upstream.py::
# test_lightnings_wandb_logger_continues_a_wandb_run_left_open)
def finish_wandb_run(*, failed: bool) -> None:
    """End this job's W&B run, so the next job of a multirun starts its own: Lightning's
    WandbLogger attaches to a run still open in the process (one run, two jobs' history)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        # Workaround: wandb.finish raises ConnectionResetError once W&B's service process has
        # ended, as SLURM ends it with the job (SIGTERM to every process of a pre-empted job's
        # step; measured on wandb 0.31.0, slurm 22.05; tests/test_slurm.py): the job's own
        # outcome is what its record must say, so the error is a warning
        with best_effort("W&B", "the end of its run"):
            wandb.finish(exit_code=1 if failed else 0)


def tracker_links(trainer: Trainer) -> dict[str, Any]:
    """Where a run's dashboards are, for its ``summary.json``.

    ``{"wandb": {"id", "project", "url"}}`` for an online W&B run; an offline one has
    ``"offline_dir"`` and ``"sync"`` (the command that uploads it) instead of ``"url"``.
    ``{"tensorboard": <log dir>}`` for TensorBoard (``tensorboard --logdir <it>``). Empty on
    processes other than rank zero.
    """
    links: dict[str, Any] = {}
    if not trainer.is_global_zero:
        return links
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            with best_effort("W&B", "where its run is"):
                run = logger.experiment
                entry: dict[str, Any] = {"id": run.id, "project": run.project}
                if run.offline:
                    entry.update(offline_dir=run.sync_dir, sync=f"wandb sync {run.sync_dir}")
                else:
                    entry["url"] = run.url
                links["wandb"] = entry
        elif isinstance(logger, TensorBoardLogger):
            links["tensorboard"] = logger.log_dir
    return links
