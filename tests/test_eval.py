"""`python eval.py ckpt_path=…` re-tests a checkpoint with the training run's own data and reports
per-class results, the confusion matrix and the most confident mistakes."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Compose
from omegaconf import OmegaConf

from cnnzoo.callbacks.test_report import class_metrics
from cnnzoo.eval import evaluate


def test_class_metrics_match_hand_computed_values() -> None:
    # true 0: 3 right, 1 called "1"; true 1: 1 right; class 2 never seen, predicted once (from 1)
    matrix = torch.tensor([[3, 1, 0], [0, 1, 1], [0, 0, 0]])
    metrics = class_metrics(matrix)
    assert metrics["accuracy"].tolist() == pytest.approx([0.75, 0.5, 0.0])
    assert metrics["precision"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert metrics["f1"].tolist() == pytest.approx([2 * 0.75 / 1.75, 0.5, 0.0])
    assert metrics["support"].tolist() == [4, 2, 0]


def test_training_writes_the_test_report(trained: tuple[Path, dict[str, Any]]) -> None:
    run_dir, record = trained
    for name in ("per_class.csv", "confusion_matrix.csv", "confusion_matrix.png"):
        assert (run_dir / "test_report" / name).stat().st_size > 0
    assert 0 < record["metrics"]["test/f1_macro"] <= 1
    assert 0 < record["metrics"]["test/acc_balanced"] <= 1


def test_eval_uses_the_runs_data_and_reports_per_class(
    trained: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    compose_cfg: Compose,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    ckpt.write_bytes((trained[0] / "checkpoints" / "best.ckpt").read_bytes())
    # the training run's saved config, as Hydra writes it: only 200 of the 500 test images
    run_cfg = compose_cfg("data.test_size=200")
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(run_cfg, run_dir / ".hydra" / "config.yaml")

    out = tmp_path / "eval"
    caplog.set_level(logging.INFO, logger="cnnzoo")
    record = evaluate(compose_cfg(f"ckpt_path={ckpt}", f"paths.output_dir={out}", config="eval"))
    assert "Using the data config of the training run" in caplog.text
    metrics = record["metrics"]
    assert metrics["test/acc"] > 0.3  # chance is 0.1
    assert {"test/acc_top5", "test/f1_macro", "test/acc_balanced"} <= metrics.keys()
    assert [row["class"] for row in record["per_class"]] == [str(d) for d in range(10)]

    with open(out / "test_report" / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    counts = torch.tensor([[int(c) for c in row[1:]] for row in rows[1:]])
    assert counts.sum() == 200  # every test image of the run's split once
    assert counts.diag().sum() / counts.sum() == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert [row["support"] for row in record["per_class"]] == counts.sum(dim=1).tolist()
    if counts.diag().sum() < counts.sum():
        assert (out / "test_report" / "misclassified.png").stat().st_size > 0
