"""The README's workflows, run in-process: train, re-test, resume, log, and what a run leaves."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from cli import QUIET
from conftest import Compose, Train

from cnnzoo.checkpoint import load_classifier, read_checkpoint
from cnnzoo.eval import evaluate


def _csv_column(run_dir: Path, name: str) -> list[float]:
    values = []
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with open(path) as f:
            values += [float(row[name]) for row in csv.DictReader(f) if row.get(name)]
    return values


def test_default_run_learns_and_records_itself(trained: tuple[Path, dict[str, Any]]) -> None:
    run_dir, record = trained
    assert record["metrics"]["test/acc"] > 0.5  # 10 classes: chance is 0.1
    assert record["metrics"]["val/acc_best"] >= record["metrics"]["val/acc"] - 1e-6
    losses = _csv_column(run_dir, "train/loss_epoch")
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert record["best_ckpt"] == str(run_dir / "checkpoints" / "best.ckpt")
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 2


def test_checkpoint_holds_plain_data_and_reproduces_outputs(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    path = trained[0] / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # no pickled modules
    assert checkpoint["hyper_parameters"]["net"]["name"] == "lenet"
    model = load_classifier(path)
    twin = type(model)(**checkpoint["hyper_parameters"]).eval()
    twin.load_state_dict(checkpoint["state_dict"])
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))


@pytest.mark.parametrize("callbacks", ["default", "ema", "none"])
def test_the_run_tests_the_weights_eval_reloads(
    callbacks: str, train_run: Train, compose_cfg: Compose, tmp_path: Path
) -> None:
    """test/acc of the run is eval.py's on the same checkpoint, for every callbacks option: with
    EMA both use the averaged weights that validation scored and the checkpoint holds."""
    from conftest import run_training

    extra = {"ema": ["callbacks.ema.decay=0.9"], "none": []}.get(callbacks, [*QUIET])
    record = run_training(
        tmp_path / "run",
        "debug=limit",
        f"callbacks={callbacks}",
        "trainer.limit_test_batches=1.0",
        *extra,
    )
    assert record["tested_ckpt"] is not None
    cfg = compose_cfg(
        # quoted: Lightning's own checkpoint names (callbacks=none) hold `=`
        f"ckpt_path='{record['tested_ckpt']}'",
        f"paths.output_dir={tmp_path / 'eval'}",
        "+trainer.enable_progress_bar=false",
        config="eval",
    )
    evaluated = evaluate(cfg)
    assert evaluated["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    assert evaluated["metrics"]["test/loss"] == pytest.approx(record["metrics"]["test/loss"])


def test_last_checkpoint_is_every_epochs_even_when_validation_stops_improving(
    train_run: Train, tmp_path: Path
) -> None:
    # lr 1e-12: val/acc never beats epoch 0, so best.ckpt stays at epoch 0 while training goes on
    record = train_run("trainer.max_epochs=3", "model.optimizer.lr=1e-12")
    assert read_checkpoint(record["best_ckpt"])["epoch"] == 0
    assert read_checkpoint(record["last_ckpt"])["epoch"] == 2


def test_a_run_without_validation_saves_last_and_tests_it(train_run: Train) -> None:
    record = train_run("data.val_size=0", "trainer.max_epochs=2")
    assert record["best_ckpt"] is None
    assert read_checkpoint(record["last_ckpt"])["epoch"] == 1
    assert record["tested_ckpt"] == record["last_ckpt"]
    assert "val/acc" not in record["metrics"] and "test/acc" in record["metrics"]


def test_training_resumes_in_its_run_dir_from_last_checkpoint(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from conftest import run_training

    source = trained[0]
    copy = tmp_path / "run"
    (copy / "checkpoints").mkdir(parents=True)
    (copy / "checkpoints" / "last.ckpt").write_bytes(
        (source / "checkpoints/last.ckpt").read_bytes()
    )
    record = run_training(
        copy,
        "debug=limit",
        "trainer.max_epochs=4",
        f"ckpt_path={copy / 'checkpoints' / 'last.ckpt'}",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
    )
    assert record["resumed_from"] == str(copy / "checkpoints" / "last.ckpt")
    assert read_checkpoint(copy / "checkpoints" / "last.ckpt")["epoch"] == 3  # 0-2 came with it


@pytest.mark.parametrize("logger", ["~logger", "logger=[]", "logger=[csv,tensorboard]"])
def test_any_set_of_loggers_trains(logger: str, train_run: Train, tmp_path: Path) -> None:
    record = train_run(logger, "trainer.max_epochs=1", "test=false")
    run_dir = tmp_path / "run"
    assert record["metrics"]["val/acc"] > 0
    assert (run_dir / "csv").is_dir() == ("csv" in logger)
    assert bool(list(run_dir.rglob("events.out.tfevents.*"))) == ("tensorboard" in logger)


def test_wandb_offline_run_holds_the_metrics_and_config(train_run: Train, tmp_path: Path) -> None:
    from wandb_records import history, run_info

    record = train_run("logger=wandb", "trainer.max_epochs=1")
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    rows = list(history(run_file))
    logged = {key for row in rows for key in row}
    assert {"train/loss_epoch", "val/acc", "val/acc_best", "test/acc"} <= logged
    test_acc = [row["test/acc"] for row in rows if "test/acc" in row]
    assert test_acc == [pytest.approx(record["metrics"]["test/acc"])]
    info = run_info(run_file)
    assert info["config"]["model"]["net"]["name"] == "lenet"
    assert info["config"]["model"]["num_classes"] == 10  # resolved, not "${datamodule:...}"
    assert (tmp_path / "run" / "wandb_run_id").read_text().strip() == info["id"]
