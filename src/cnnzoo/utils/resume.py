"""Resuming a run where it stopped: find its checkpoint, continue its directory and its loggers,
and leave a checkpoint behind when training is interrupted."""

from __future__ import annotations

import logging
import random
import secrets
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, open_dict

from cnnzoo.errors import UserError

__all__ = ["InterruptCheckpoint", "RngState", "find_last_checkpoint", "prepare_resume"]

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id"


def find_last_checkpoint(task_dir: str | Path) -> Path | None:
    """The newest ``last.ckpt`` of the runs (and multirun jobs) under ``logs/<task_name>``."""
    task_dir = Path(task_dir)
    found = [
        *task_dir.glob("runs/*/checkpoints/last.ckpt"),
        *task_dir.glob("multiruns/*/*/checkpoints/last.ckpt"),
    ]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def _resolve(cfg: DictConfig) -> Path | None:
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        task_dir = Path(cfg.paths.log_dir) / cfg.task_name
        found = find_last_checkpoint(task_dir)
        if found is None:
            raise UserError(f"ckpt_path=last: no run under {task_dir} has checkpoints/last.ckpt")
        log.info("ckpt_path=last: resuming from %s", found)
        return found
    if not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path}: no such checkpoint file (or `last`)")
    return Path(ckpt_path)


def prepare_resume(cfg: DictConfig) -> str | None:
    """Resolve ``cfg.ckpt_path`` (a file, ``last`` or null). ``last`` continues the run it found:
    ``paths.output_dir`` becomes that run's directory, so the
    checkpoints and the W&B run (same id) continue there, and the CSV logger adds the next
    ``csv/version_<n>`` beside the interrupted run's (Lightning's CSV writer would truncate an
    existing metrics file). A checkpoint file named explicitly starts a new run directory.
    A new W&B run's id is written to ``<run dir>/wandb_run_id`` for a later resume.

    Edits ``cfg`` in place; returns the checkpoint path for ``trainer.fit``.
    """
    ckpt = _resolve(cfg)
    run_dir = ckpt.parent.parent if ckpt is not None else None
    continuing = cfg.get("ckpt_path") == "last" and cfg.get("train")
    loggers = cfg.get("logger") or {}
    with open_dict(cfg):
        if continuing:
            cfg.paths.output_dir = str(run_dir)
        for node in loggers.values():
            if not isinstance(node, DictConfig) or "_target_" not in node:
                continue
            if node._target_.endswith("WandbLogger") and node.get("id") is None:
                id_file = Path(cfg.paths.output_dir) / WANDB_ID_FILE
                if continuing and id_file.is_file():
                    node.id = id_file.read_text().strip()
                    node.resume = "allow"
                else:
                    # W&B's own id format: 8 lowercase letters and digits
                    node.id = secrets.token_hex(4)
                    _write_text(id_file, node.id)
    return None if ckpt is None else str(ckpt)


@rank_zero_only
def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Saves ``<dirpath>/last.ckpt`` when training is stopped by Ctrl-C or SIGTERM (Lightning
    turns SIGTERM into an exception at the next batch end), so ``ckpt_path=last`` resumes it.

    Other exceptions leave the last regular checkpoint alone: a crash is not a state to resume.
    """

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        super().__init__(dirpath=dirpath, filename=filename)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        interrupted = isinstance(exception, KeyboardInterrupt | SIGTERMException)
        if interrupted and trainer.training and trainer.global_step > 0:
            log.warning("Training interrupted: saving %s", self.ckpt_path)
            super().on_exception(trainer, pl_module, exception)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Keep the file: the parent deletes it after a clean run, and it is the regular
        ``last.ckpt`` of ModelCheckpoint too."""


class RngState(L.Callback):
    """Saves the python, numpy and torch (CPU and CUDA) random states in each checkpoint and
    restores them on resume, so that the data order and augmentations after a resume are those
    the unbroken run would have drawn. Plain tensors and tuples: the file still loads with
    ``torch.load(weights_only=True)``."""

    def state_dict(self) -> dict[str, Any]:
        name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": (
                name,
                torch.from_numpy(keys.astype(np.int64)),
                position,
                has_gauss,
                cached_gaussian,
            ),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, position, has_gauss, cached_gaussian = state_dict["numpy"]
        np.random.set_state(
            (name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
        )
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
