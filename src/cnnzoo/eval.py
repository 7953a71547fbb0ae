"""Re-test a checkpoint: ``python eval.py ckpt_path=…/best.ckpt``.

Reports top-1/top-5 accuracy, macro F1 and per-class accuracy, and writes the confusion matrix
(CSV and PNG) and a grid of the most confidently misclassified images to ``<eval dir>/test_report``.

The network is rebuilt from the checkpoint's own hyperparameters and the data config is the
training run's (``<run dir>/.hydra/config.yaml``) unless ``data=…`` is given on the command line
(``cnnzoo.checkpoint.load_for_inference``: nothing outside cnnzoo's allowlist is instantiated).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from cnnzoo import console
from cnnzoo.config import CONFIG_PATH
from cnnzoo.errors import user_errors
from cnnzoo.records import write_job_summary

# torch and Lightning are imported inside the functions that use them, so that `--help`,
# `--cfg job` and tab completion print without them (tests/test_startup.py)

__all__ = ["evaluate", "main"]

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    import lightning as L

    from cnnzoo.callbacks.test_report import TestReport
    from cnnzoo.checkpoint import load_for_inference
    from cnnzoo.trackers import instantiate_loggers

    model, datamodule = load_for_inference(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    report = TestReport(dirpath=str(Path(cfg.paths.output_dir) / "test_report"))
    loggers = instantiate_loggers(cfg.get("logger"), run_dir=cfg.paths.output_dir)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[report])
    trainer.test(model, datamodule=datamodule)
    metrics = {name: float(value) for name, value in sorted(trainer.callback_metrics.items())}
    per_class = _read_per_class(Path(cfg.paths.output_dir) / "test_report" / "per_class.csv")
    for row in per_class:
        log.info("class %-12s accuracy %.4f  f1 %.4f", row["class"], row["accuracy"], row["f1"])
    return {"ckpt_path": str(cfg.ckpt_path), "metrics": metrics, "per_class": per_class}


def _read_per_class(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():  # not written on other ranks
        return []
    with open(path, newline="") as f:
        return [
            {key: value if key == "class" else float(value) for key, value in row.items()}
            for row in csv.DictReader(f)
        ]


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        record = evaluate(cfg)
        write_job_summary(HydraConfig.get().runtime.output_dir, record)


def main() -> None:
    console.prepare_command_line()
    console.quiet_third_party_messages()
    _main()


if __name__ == "__main__":
    main()
