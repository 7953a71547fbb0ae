"""Datamodules: every dataset read from its real on-disk format, trained on through the pipeline."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from dataset_files import (
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_kmnist,
    write_mnist,
    write_svhn,
)
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    MNISTDataModule,
    SVHNDataModule,
)
from cnnzoo.errors import UserError
from cnnzoo.train import train

# data config -> (writer, overrides sizing its validation split to the tiny synthetic set)
DATASETS = {
    "mnist": (write_mnist, ["data.val_size=10"]),
    "fashion_mnist": (write_fashion_mnist, ["data.val_size=10"]),
    "kmnist": (write_kmnist, ["data.val_size=10"]),
    "cifar10": (write_cifar10, ["data.val_size=10"]),
    "cifar100": (write_cifar100, ["data.val_size=100"]),
    "svhn": (write_svhn, ["data.val_size=10"]),
}


def _config(tmp_path: Path, data: str, *overrides: str) -> DictConfig:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"data={data}",
                f"paths.data_dir={tmp_path / 'data'}",
                f"paths.output_dir={tmp_path / 'run'}",
                "data.batch_size=16",
                "data.num_workers=0",
                "logger=csv",
                *overrides,
            ],
        )


@pytest.mark.parametrize(
    "data",
    [
        # the MNIST variants share all code but the file names: they run in `make test-all`
        pytest.param(name, marks=pytest.mark.slow) if name in ("fashion_mnist", "kmnist") else name
        for name in sorted(DATASETS)
    ],
)
def test_each_dataset_trains_from_files_in_its_own_format(tmp_path: Path, data: str) -> None:
    write, overrides = DATASETS[data]
    write(tmp_path / "data")
    cfg = _config(tmp_path, data, "debug=fdr", *overrides)

    record = train(cfg)

    assert {"train/loss", "val/acc", "test/acc"} <= set(record["metrics"])
    module = cfg.data._target_
    assert cfg.model.num_classes == cfg.model.net.num_classes
    assert (cfg.model.num_classes, cfg.model.net.in_channels) == (
        (100, 3) if data == "cifar100" else (10, 1 if "mnist" in data else 3)
    ), module


def test_switching_to_cifar100_retargets_the_model_without_touching_data(tmp_path: Path) -> None:
    # the resolver reads class attributes: no files needed, nothing downloaded
    cfg = _config(tmp_path, "cifar100", "model=resnet18")
    assert cfg.model.net.num_classes == 100
    assert cfg.model.net.in_channels == 3
    assert not (tmp_path / "data").exists()


def test_explicit_model_value_contradicting_the_data_names_both(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "data")
    cfg = _config(
        tmp_path, "cifar100", "debug=fdr", "data.val_size=100", "model.net.num_classes=10"
    )
    with pytest.raises(UserError, match=r"model.net.num_classes=10 .* num_classes=100"):
        train(cfg)


def test_missing_data_says_where_it_looked_what_it_expected_and_how_to_get_it(
    tmp_path: Path,
) -> None:
    datamodule = MNISTDataModule(data_dir=str(tmp_path))
    with pytest.raises(UserError) as error:
        datamodule.setup("fit")
    message = str(error.value)
    assert str(tmp_path) in message
    assert "MNIST/raw/train-images-idx3-ubyte" in message
    assert "data.download=true" in message


def _no_network(*args, **kwargs):
    raise URLError("[Errno -3] Temporary failure in name resolution")


def test_download_without_network_gives_one_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(UserError, match="could not download .*name resolution"):
        datamodule.prepare_data()


def test_present_data_is_never_downloaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    write_mnist(tmp_path)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), download=True, val_size=10)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 50


def test_validation_split_is_stratified_and_fixed_by_split_seed(tmp_path: Path) -> None:
    write_cifar10(tmp_path)

    def val_labels(seed: int) -> torch.Tensor:
        datamodule = CIFAR10DataModule(data_dir=str(tmp_path), val_size=20, split_seed=seed)
        datamodule.setup("fit")
        return datamodule.val_set.labels

    assert torch.equal(val_labels(0), val_labels(0))
    assert torch.bincount(val_labels(0), minlength=10).tolist() == [2] * 10


def test_mixing_gives_soft_targets_for_training_batches_only(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    datamodule = CIFAR10DataModule(
        data_dir=str(tmp_path), val_size=10, mixup_alpha=0.2, cutmix_alpha=1.0
    )
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))

    mixed_images, targets = datamodule.batch_mix(images, labels)

    assert targets.shape == (len(labels), 10)
    assert torch.allclose(targets.sum(dim=1), torch.ones(len(labels)))
    assert mixed_images.shape == images.shape
    # outside training (no trainer, or validating) the batch passes through untouched
    assert datamodule.on_after_batch_transfer((images, labels), 0)[1] is labels


def test_show_writes_a_png_grid(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data")
    out = tmp_path / "grid.png"
    from cnnzoo.data.__main__ import main

    assert main(["show", "data=cifar10", "data.augment=strong", "data.cutmix_alpha=1.0",
                 f"paths.data_dir={tmp_path / 'data'}", "data.val_size=10",
                 "--out", str(out), "--n", "8"]) == 0  # fmt: skip
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_option_names_the_choices() -> None:
    with pytest.raises(ValueError, match="data.augment='heavy' is not one of: none, standard"):
        CIFAR100DataModule(augment="heavy")


def test_svhn_extra_images_join_the_training_split_only(tmp_path: Path) -> None:
    write_svhn(tmp_path, n_train=100, n_test=20, n_extra=30)
    datamodule = SVHNDataModule(data_dir=str(tmp_path), val_size=10, use_extra=True)
    datamodule.setup("fit")
    sizes = len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)
    assert sizes == (90 + 30, 10, 20)
    # SVHN's class 10 is the digit 0
    assert datamodule.test_set.labels.min() == 0
