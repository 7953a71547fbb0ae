"""Recipe knobs: optimizers and schedules, weight-decay groups, precision, EMA, and every
experiment config running end to end on synthetic data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from cli import QUIET
from conftest import compose_config, run_training
from dataset_files import write_cifar10, write_cifar100, write_imagefolder, write_mnist
from hydra.utils import instantiate
from torch import nn

from cnnzoo.config import config_options
from cnnzoo.optim import param_groups, warmup_cosine, warmup_multistep

EXPERIMENTS = config_options("experiment")


def lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    values = []
    for _ in range(steps):
        values.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return values


def sgd(lr: float = 1.0) -> torch.optim.SGD:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor() -> None:
    values = lrs(warmup_cosine(sgd(), total_steps=10, warmup_steps=4, min_lr_ratio=0.1), 11)
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[4:], values[5:], strict=False))
    assert values[10] == pytest.approx(0.1)


def test_warmup_multistep_divides_at_each_milestone() -> None:
    values = lrs(warmup_multistep(sgd(), milestones=[3, 5], gamma=0.1, warmup_steps=2), 6)
    assert values == pytest.approx([0.5, 1.0, 1.0, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="milestones must increase"):
        warmup_multistep(sgd(), milestones=[5, 3])


def test_norm_and_bias_parameters_can_be_kept_out_of_weight_decay() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Linear(8, 2))
    decayed, exempt = param_groups(net, exclude_norm_and_bias=True)
    assert [p.shape for p in decayed["params"]] == [(8, 3, 3, 3), (2, 8)]
    assert len(exempt["params"]) == 3 and exempt["weight_decay"] == 0.0
    optimizer = torch.optim.SGD(
        param_groups(net, exclude_norm_and_bias=True), lr=0.1, weight_decay=5e-4
    )
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]
    (everything,) = param_groups(net, exclude_norm_and_bias=False)
    assert len(everything["params"]) == 5


def compose_train(*overrides: str):
    return compose_config(*overrides, "paths.output_dir=/tmp/unused")


@pytest.mark.parametrize(
    ("optimizer", "scheduler", "optimizer_type", "interval"),
    [
        ("adam", "warmup_cosine", torch.optim.Adam, "step"),
        ("adamw", "onecycle", torch.optim.AdamW, "step"),
        ("sgd", "multistep", torch.optim.SGD, "epoch"),
        ("sgd", "constant", torch.optim.SGD, None),
    ],
)
def test_optimizer_and_scheduler_groups_build_what_they_name(
    optimizer: str, scheduler: str, optimizer_type: type, interval: str | None
) -> None:
    cfg = compose_train(f"model/optimizer={optimizer}", f"model/scheduler={scheduler}",
                        "model.decay_norm_and_bias=false")  # fmt: skip
    model = instantiate(cfg.model, _recursive_=False, _convert_="all")
    model.trainer = type("FakeTrainer", (), {"estimated_stepping_batches": 100, "max_epochs": 10})
    configured = model.configure_optimizers()
    built = configured["optimizer"] if isinstance(configured, dict) else configured
    assert isinstance(built, optimizer_type)
    assert built.param_groups[-1]["weight_decay"] == 0.0
    if interval is None:
        assert not isinstance(configured, dict)
    else:
        assert configured["lr_scheduler"]["interval"] == interval


def train(*args: str, tmp_path: Path) -> dict:
    return run_training(tmp_path / "run", *args, *QUIET)


def test_bf16_mixed_precision_trains_on_cpu_with_ema_and_clipping(tmp_path: Path) -> None:
    record = train("debug=limit", "trainer.accelerator=cpu", "trainer.precision=bf16-mixed",
                   "callbacks=ema", "trainer.gradient_clip_val=1.0",
                   "trainer.accumulate_grad_batches=2", "model.label_smoothing=0.1",
                   tmp_path=tmp_path)  # fmt: skip
    metrics = record["metrics"]
    assert math.isfinite(metrics["train/loss"])
    assert metrics["test/acc"] > 0.2  # chance: 0.1
    assert metrics["train/images_per_s"] > 0


def test_channels_last_trains(tmp_path: Path) -> None:
    record = train("debug=fdr", "model=resnet18", "model.channels_last=true", tmp_path=tmp_path)
    assert math.isfinite(record["metrics"]["train/loss"])


@pytest.mark.slow
def test_compiled_backbone_trains(tmp_path: Path) -> None:
    record = train("debug=fdr", "model.compile=true", tmp_path=tmp_path)
    assert math.isfinite(record["metrics"]["train/loss"])


# each experiment's data, written small in its real format; runs use 32 images per batch
DATA = {
    "mnist": lambda root: [f"paths.data_dir={write_mnist(root)}", "data.val_size=20"],
    "cifar10": lambda root: [f"paths.data_dir={write_cifar10(root)}", "data.val_size=20"],
    "cifar100": lambda root: [f"paths.data_dir={write_cifar100(root)}", "data.val_size=40"],
    "imagenet": lambda root: [f"data.path={write_imagefolder(root, splits=('train', 'val'))}",
                              "data.image_size=64"],
}  # fmt: skip


# the big nets take ~30-60 s each on 2 CPU cores even for one batch: `make test-all` runs them
QUICK = {"mnist_lenet", "mnist_mlp", "cifar10_resnet18"}


@pytest.mark.parametrize(
    "experiment",
    [e if e in QUICK else pytest.param(e, marks=pytest.mark.slow) for e in EXPERIMENTS],
)
def test_every_experiment_runs_end_to_end(experiment: str, tmp_path: Path) -> None:
    data = DATA[experiment.split("_")[0]](tmp_path / "data")
    if experiment.endswith("_finetune"):
        # the pretrained weights themselves are tested in test_finetune.py (no download here)
        data.append("model.net.weights=null")
    record = train(f"experiment={experiment}", "debug=fdr", "data.batch_size=32",
                   "data.num_workers=0", *data, tmp_path=tmp_path)  # fmt: skip
    assert math.isfinite(record["metrics"]["test/loss"])
