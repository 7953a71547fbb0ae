"""What the LightningModule logs, and when: epoch means from running sums, step losses only on
the steps the loggers write (benchmarks/RESULTS.md: a `self.log` per step costs ~2 ms)."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from cnnzoo.module import ImageClassifier

STEPS_PER_EPOCH = 6


class StepLosses(L.Callback):
    """The loss each training step returned, and each validation batch's loss, per epoch."""

    def __init__(self) -> None:
        self.train: list[list[float]] = []
        self.val: list[list[float]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train.append([])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        self.train[-1].append(float(outputs["loss"]))

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val.append([])

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *a: Any
    ) -> None:
        x, y = batch
        with torch.no_grad():
            logits = pl_module(x)
        self.val[-1].append(float(torch.nn.functional.cross_entropy(logits, y)))


def _loader(n: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=8)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[L.Trainer, StepLosses, Path]:
    out = tmp_path_factory.mktemp("logging")
    model = ImageClassifier(
        net={"_target_": "cnnzoo.models.lenet.LeNet5", "in_channels": 1, "num_classes": 10},
        num_classes=10,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05},
    )
    losses = StepLosses()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        log_every_n_steps=4,
        logger=CSVLogger(out, name="csv"),
        callbacks=[losses],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    L.seed_everything(0, verbose=False)
    trainer.fit(model, _loader(8 * STEPS_PER_EPOCH, 1), _loader(20, 2))
    return trainer, losses, out / "csv" / "version_0" / "metrics.csv"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_step_losses_reach_the_loggers_on_their_logging_steps(fitted: tuple) -> None:
    trainer, losses, path = fitted
    logged = {int(row["step"]): float(row["train/loss_step"]) for row in _rows(path)
              if row["train/loss_step"]}  # fmt: skip
    flat = [loss for epoch in losses.train for loss in epoch]
    # Lightning writes at steps 3, 7, 11 (0-based: every 4th): the loss of exactly that step
    assert sorted(logged) == [3, 7, 11]
    assert [logged[step] for step in (3, 7, 11)] == pytest.approx([flat[3], flat[7], flat[11]])


def test_epoch_losses_are_the_means_of_the_step_losses(fitted: tuple) -> None:
    trainer, losses, path = fitted
    rows = _rows(path)
    train = [float(row["train/loss_epoch"]) for row in rows if row["train/loss_epoch"]]
    val = [float(row["val/loss"]) for row in rows if row["val/loss"]]
    assert train == pytest.approx([sum(e) / len(e) for e in losses.train], rel=1e-5)
    # 20 validation images: batches of 8, 8 and 4, so the mean is weighted by batch size; the
    # sanity check's epoch (2 batches) comes first and is not logged
    weights = [8, 8, 4]
    expected_val = [
        sum(w * v for w, v in zip(weights, epoch, strict=True)) / 20 for epoch in losses.val[-2:]
    ]
    assert val == pytest.approx(expected_val, rel=1e-5)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(train[-1])
    logged = {key for row in rows for key, value in row.items() if value}
    assert {"train/acc", "val/acc", "val/acc_top5", "val/acc_best"} <= logged


# tensor reads to the host made outside torch itself, counted while a test patches them in
_HOST_READS = [0]


class HostReads(L.Callback):
    """Records, per training step, how many tensor reads to the host (``.item()``, ``float(t)``,
    ``bool(t)``, ...) were made outside torch itself: on a GPU each one waits for the device."""

    counts: list[int] = []  # noqa: RUF012 (one instance per test run, read by the test)

    def __init__(self) -> None:
        self._at_start: int | None = None

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._at_start is not None:
            HostReads.counts.append(_HOST_READS[0] - self._at_start)
        self._at_start = _HOST_READS[0]


@pytest.mark.parametrize("bar", ["rich", "tqdm"])
def test_a_default_training_step_reads_nothing_back_from_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bar: str
) -> None:
    from hydra import compose, initialize_config_module

    from cnnzoo.config import CONFIG_MODULE
    from cnnzoo.train import train

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={tmp_path}",
                "trainer.max_epochs=1",
                "+trainer.limit_train_batches=12",
                "+trainer.limit_val_batches=2",
                "test=false",
                "+callbacks.host_reads._target_=test_module_logging.HostReads",
                *(["callbacks.rich_progress_bar=null"] if bar == "tqdm" else []),
            ],
        )
    HostReads.counts = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        read = getattr(torch.Tensor, name)

        def counted(tensor: torch.Tensor, *args: Any, _read: Any = read) -> Any:
            caller = sys._getframe(1).f_code.co_filename
            if f"{os.sep}torch{os.sep}" not in caller:  # Adam reads its CPU step counters itself
                _HOST_READS[0] += 1
            return _read(tensor, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    train(cfg)
    # steps 1..10 (the first step's set-up excluded); the loggers write at step 49, not here
    assert len(HostReads.counts) == 11
    assert HostReads.counts[1:] == [0] * 10


def test_epoch_stats_equal_torchmetrics_accuracy_and_a_weighted_mean() -> None:
    from torchmetrics.classification import MulticlassAccuracy

    from cnnzoo.module import EpochStats

    stats = EpochStats(top5=True)
    top1 = MulticlassAccuracy(12, top_k=1, average="micro")
    top5 = MulticlassAccuracy(12, top_k=5, average="micro")
    generator = torch.Generator().manual_seed(0)
    losses, sizes = [], [64, 64, 17]
    for n in sizes:
        logits = torch.randn(n, 12, generator=generator)
        target = torch.randint(0, 12, (n,), generator=generator)
        loss = torch.nn.functional.cross_entropy(logits, target)
        stats.update(logits, target, loss)
        top1.update(logits, target)
        top5.update(logits, target)
        losses.append(float(loss))
    values = stats.compute()
    assert float(values["acc"]) == pytest.approx(float(top1.compute()))
    assert float(values["acc_top5"]) == pytest.approx(float(top5.compute()))
    mean = sum(n * loss for n, loss in zip(sizes, losses, strict=True)) / sum(sizes)
    assert float(values["loss"]) == pytest.approx(mean)
    stats.reset()
    assert int(stats.images) == 0
