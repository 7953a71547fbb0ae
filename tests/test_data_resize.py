"""`data.image_size=<N>` resizes the in-memory benchmarks on the fly: batches come at N pixels on
both loading paths, the configs' `${datamodule:image_size}` reports N, and the stem follows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dataset_files import write_cifar10
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.data import CIFAR10DataModule, MNISTSampleDataModule


def compose_train(*overrides: str):
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose("train", overrides=[*overrides, "paths.output_dir=/tmp/unused"])


def first_batch(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    return write_cifar10(tmp_path, n_train=40, n_test=20)


def cifar(cifar_dir: Path, **kwargs) -> CIFAR10DataModule:
    datamodule = CIFAR10DataModule(data_dir=str(cifar_dir), val_size=10, batch_size=8, **kwargs)
    datamodule.setup("fit")
    return datamodule


def test_the_native_size_is_the_default_and_is_not_resized(cifar_dir: Path) -> None:
    datamodule = cifar(cifar_dir)
    assert datamodule.image_size == 32 and datamodule.resize_to is None
    assert first_batch(datamodule.train_dataloader())[0].shape == (8, 3, 32, 32)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("augment", ["none", "standard", "strong"])
def test_every_batch_comes_at_the_requested_size(
    cifar_dir: Path, per_sample: bool, augment: str
) -> None:
    datamodule = cifar(cifar_dir, image_size=224, augment=augment, per_sample_transforms=per_sample)
    assert datamodule.image_size == 224 and datamodule.input_shape == (3, 224, 224)
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader()):
        images, labels = first_batch(loader)
        assert images.shape == (8, 3, 224, 224) and images.dtype == torch.float32
        assert labels.shape == (8,)


def test_a_cifar_batch_at_224_is_the_stored_batch_resized_by_hand(cifar_dir: Path) -> None:
    datamodule = cifar(cifar_dir, image_size=224)
    images, labels = first_batch(datamodule.val_dataloader())  # no augmentation: comparable

    raw = datamodule.val_set.images[:8]  # the stored uint8 N x 3 x 32 x 32 images
    resized = F.interpolate(raw.float(), size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor(datamodule.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(datamodule.std).view(1, 3, 1, 1) * 255
    torch.testing.assert_close(images, (resized - mean) / std, rtol=0, atol=0)
    assert torch.equal(labels, datamodule.val_set.labels[:8])

    # the per-sample path resizes uint8 images with torchvision's v2.Resize: the same within one
    # grey level (its fixed-point uint8 arithmetic)
    per_sample = cifar(cifar_dir, image_size=224, per_sample_transforms=True)
    images_v2, _ = first_batch(per_sample.val_dataloader())
    assert (images_v2 - images).abs().max() <= 1 / (255 * min(datamodule.std))


def test_the_resize_runs_on_the_device_of_a_gpu_resident_batch(cifar_dir: Path) -> None:
    # on a CPU-only machine "resident" means in memory: the same code path, cut and resized there
    datamodule = cifar(cifar_dir, image_size=64, gpu_resident=True)
    images, _ = first_batch(datamodule.train_dataloader())
    assert images.shape == (8, 3, 64, 64) and images.device == datamodule.val_set.images.device


def test_mnist_sample_resizes_too() -> None:
    datamodule = MNISTSampleDataModule(image_size=56, batch_size=4)
    datamodule.setup("fit")
    assert first_batch(datamodule.train_dataloader())[0].shape == (4, 1, 56, 56)


def test_image_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="data.image_size"):
        MNISTSampleDataModule(image_size=0)


@pytest.mark.parametrize(("size", "stem", "kernel"), [(None, "small", 3), (224, "imagenet", 7)])
def test_the_configs_report_the_size_and_the_stem_follows(
    size: int | None, stem: str, kernel: int
) -> None:
    overrides = ["data=cifar10", "model=resnet18"]
    if size is not None:
        overrides.append(f"data.image_size={size}")
    cfg = compose_train(*overrides)
    assert cfg.model.net.stem == stem
    with torch.device("meta"):
        net = instantiate(cfg.model.net)
    assert net.conv1.kernel_size == (kernel, kernel)
    assert instantiate(cfg.data).image_size == (size or 32)
