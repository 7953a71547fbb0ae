"""Re-test a checkpoint: ``python eval.py ckpt_path=…/best.ckpt``.

Reports top-1/top-5 accuracy, macro F1 and per-class accuracy, and writes the confusion matrix
(CSV and PNG) and a grid of the most confidently misclassified images to ``<eval dir>/test_report``.

The network is rebuilt from the checkpoint's own hyperparameters. The data config is the training
run's (read from ``<run dir>/.hydra/config.yaml``) unless ``data=…`` is given on the command line.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnzoo.callbacks.test_report import TestReport
from cnnzoo.config import CONFIG_PATH
from cnnzoo.errors import UserError
from cnnzoo.module import ImageClassifier
from cnnzoo.utils.instantiate import instantiate_loggers
from cnnzoo.utils.records import write_job_summary

__all__ = ["data_from_run", "evaluate", "main", "training_config"]

log = logging.getLogger(__name__)


def training_config(ckpt_path: Path) -> DictConfig | None:
    """The composed config of the run that wrote ``ckpt_path`` (``<run>/checkpoints/x.ckpt``)."""
    saved = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    return OmegaConf.load(saved) if saved.is_file() else None


def data_from_run(cfg: DictConfig, ckpt_path: Path) -> None:
    """Replace ``cfg.data`` by the training run's, unless ``data=…`` is on the command line."""
    chosen_on_command_line = any(
        override.split("=", 1)[0].lstrip("+~").split(".", 1)[0] == "data"
        for override in HydraConfig.get().overrides.task
    )
    run_cfg = training_config(ckpt_path)
    if run_cfg is None or chosen_on_command_line:
        return
    log.info("Using the data config of the training run: %s", run_cfg.data._target_)
    with open_dict(cfg):
        # keep this machine's paths: the run may come from elsewhere
        data = OmegaConf.merge(run_cfg.data, {"data_dir": cfg.data.data_dir})
        cfg.data = data


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = Path(cfg.ckpt_path)
    if not ckpt_path.is_file():
        raise UserError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    data_from_run(cfg, ckpt_path)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model = ImageClassifier.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    report = TestReport(dirpath=str(Path(cfg.paths.output_dir) / "test_report"))
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=instantiate_loggers(cfg.get("logger")), callbacks=[report]
    )
    trainer.test(model, datamodule=datamodule)
    metrics = {name: float(value) for name, value in sorted(trainer.callback_metrics.items())}
    per_class = _read_per_class(Path(cfg.paths.output_dir) / "test_report" / "per_class.csv")
    for row in per_class:
        log.info("class %-12s accuracy %.4f  f1 %.4f", row["class"], row["accuracy"], row["f1"])
    return {"ckpt_path": str(ckpt_path), "metrics": metrics, "per_class": per_class}


def _read_per_class(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():  # not written on other ranks
        return []
    with open(path, newline="") as f:
        return [
            {key: value if key == "class" else float(value) for key, value in row.items()}
            for row in csv.DictReader(f)
        ]


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> None:
    record = evaluate(cfg)
    write_job_summary(HydraConfig.get().runtime.output_dir, record)


if __name__ == "__main__":
    main()
