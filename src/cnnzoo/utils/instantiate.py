"""Instantiate the callback and logger groups, whose configs map names to ``_target_`` nodes."""

from __future__ import annotations

import logging
import netrc
import os

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnzoo.errors import UserError

__all__ = ["instantiate_callbacks", "instantiate_loggers", "run_identity"]

log = logging.getLogger(__name__)


def _targets(cfg: DictConfig | None, group: str) -> list[DictConfig]:
    if cfg is None:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"the {group} config must be a mapping of names to _target_ nodes")
    # a node set to null (e.g. `callbacks.rich_progress_bar=null`) switches that entry off
    return [node for node in cfg.values() if isinstance(node, DictConfig) and "_target_" in node]


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return [instantiate(node) for node in _targets(cfg, "callbacks")]


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


def _check_wandb_can_start(node: DictConfig) -> None:
    """An online W&B run without credentials would prompt for them; a sweep must never wait."""
    offline = node.get("offline") or os.environ.get("WANDB_MODE") in (
        "offline",
        "disabled",
        "dryrun",
    )
    if not offline and not _wandb_credentials_found():
        raise UserError(
            "logger=wandb is online but no W&B credentials were found: run `wandb login` once, "
            "set WANDB_API_KEY, or log offline with logger.wandb.offline=true "
            "(or WANDB_MODE=offline)"
        )


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    loggers = []
    for node in _targets(cfg, "logger"):
        if node._target_.endswith("WandbLogger"):
            _check_wandb_can_start(node)
            group, name = run_identity()
            node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
            with open_dict(node):
                node.group = node.get("group") or group or None
                node.name = node.get("name") or name or None
                # the Dashboard callback logs the checkpoints (offline too; best and latest)
                node.pop("log_model", None)
        loggers.append(instantiate(node))
    return loggers
