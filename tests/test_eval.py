"""`python eval.py ckpt_path=…` re-tests a checkpoint with the training run's own data and reports
per-class results, the confusion matrix and the most confident mistakes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from cli import run, train_short

from cnnzoo.callbacks.test_report import class_metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_short(tmp_path_factory.mktemp("run"), "trainer.max_epochs=3")


def test_class_metrics_match_hand_computed_values() -> None:
    # true 0: 3 right, 1 called "1"; true 1: 1 right; class 2 never seen, predicted once (from 1)
    matrix = torch.tensor([[3, 1, 0], [0, 1, 1], [0, 0, 0]])
    metrics = class_metrics(matrix)
    assert metrics["accuracy"].tolist() == pytest.approx([0.75, 0.5, 0.0])
    assert metrics["precision"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert metrics["f1"].tolist() == pytest.approx([2 * 0.75 / 1.75, 0.5, 0.0])
    assert metrics["support"].tolist() == [4, 2, 0]


def test_training_writes_the_test_report(trained: Path) -> None:
    report = trained / "test_report"
    for name in ("per_class.csv", "confusion_matrix.csv", "confusion_matrix.png"):
        assert (report / name).stat().st_size > 0
    metrics = json.loads((trained / "summary.json").read_text())["metrics"]
    assert 0 < metrics["test/f1_macro"] <= 1
    assert 0 < metrics["test/acc_balanced"] <= 1


def test_eval_restores_the_run_and_reports_per_class(trained: Path, tmp_path: Path) -> None:
    result = run(
        "eval.py",
        f"ckpt_path={trained}/checkpoints/best.ckpt",
        f"hydra.run.dir={tmp_path}",
    )
    assert "Using the data config of the training run" in result.stdout + result.stderr
    record = json.loads((tmp_path / "summary.json").read_text())
    metrics = record["metrics"]
    assert metrics["test/acc"] > 0.3  # chance is 0.1
    assert {"test/acc_top5", "test/f1_macro", "test/acc_balanced"} <= metrics.keys()
    assert [row["class"] for row in record["per_class"]] == [str(d) for d in range(10)]

    with open(tmp_path / "test_report" / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    counts = torch.tensor([[int(c) for c in row[1:]] for row in rows[1:]])
    assert counts.sum() == 500  # every test image once
    assert counts.diag().sum() / counts.sum() == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert [row["support"] for row in record["per_class"]] == counts.sum(dim=1).tolist()
    if counts.diag().sum() < counts.sum():
        assert (tmp_path / "test_report" / "misclassified.png").stat().st_size > 0
