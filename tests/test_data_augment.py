"""Augmentation: the batched (GPU-resident) path draws per image and matches the standard one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dataset_files import write_cifar10
from hydra import compose, initialize_config_module

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.data import CIFAR10DataModule, TensorImageDataset
from cnnzoo.data.augment import random_crop, random_erasing, random_hflip
from cnnzoo.train import train


def test_random_crop_cuts_each_image_at_its_own_offset_of_the_padded_image() -> None:
    image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    crops = random_crop(image.expand(64, -1, -1, -1), padding=2)

    padded = F.pad(image, (2, 2, 2, 2))
    windows = {
        (top, left): padded[:, top : top + 8, left : left + 8]
        for top in range(5)
        for left in range(5)
    }
    offsets = [
        next(key for key, window in windows.items() if torch.equal(window, crop)) for crop in crops
    ]
    assert len(set(offsets)) > 10  # 64 draws over 25 offsets


def test_flip_and_erasing_are_drawn_per_image() -> None:
    images = torch.arange(16.0).view(1, 1, 4, 4).expand(200, -1, -1, -1)
    flipped = (random_hflip(images) != images).flatten(1).any(dim=1).float().mean()
    assert 0.35 < flipped < 0.65

    erased = (random_erasing(images + 1, 0.5) == 0).flatten(1).any(dim=1).float().mean()
    assert 0.35 < erased < 0.65


def _augmented_statistics(data_dir: Path, *, per_sample: bool, epochs: int = 10) -> torch.Tensor:
    datamodule = CIFAR10DataModule(
        data_dir=str(data_dir), val_size=10, batch_size=30, per_sample_transforms=per_sample
    )
    datamodule.setup("fit")
    batches = [x for _ in range(epochs) for x, _ in datamodule.train_dataloader()]
    images = torch.cat(batches)  # N x 3 x 32 x 32
    padding = images == images.amin()  # the zero fill of the crop, after normalisation
    return torch.stack(
        [images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3)), padding.float().mean().expand(3)]
    )


def test_batched_and_per_sample_paths_give_the_same_batch_statistics(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    batched = _augmented_statistics(tmp_path, per_sample=False)
    per_sample = _augmented_statistics(tmp_path, per_sample=True)
    assert torch.allclose(batched, per_sample, atol=0.03), (batched, per_sample)


def _train(tmp_path: Path, *overrides: str) -> dict:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=cifar10",
                f"paths.data_dir={tmp_path / 'data'}",
                f"paths.output_dir={tmp_path / 'run'}",
                "data.val_size=100",
                "data.batch_size=32",
                "data.num_workers=0",
                "trainer.accelerator=cpu",
                "trainer.max_epochs=4",
                "logger=csv",
                "callbacks=none",
                "test=false",
                *overrides,
            ],
        )
    return train(cfg)["metrics"]


def test_gpu_resident_and_per_sample_training_reach_similar_accuracy(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data", n_train=600, n_test=20)
    resident = _train(tmp_path, "data.gpu_resident=true")
    per_sample = _train(tmp_path, "data.per_sample_transforms=true")
    assert resident["val/acc"] > 0.3 and per_sample["val/acc"] > 0.3  # chance is 0.1
    assert abs(resident["val/acc"] - per_sample["val/acc"]) < 0.15


def test_gpu_resident_keeps_the_dataset_on_the_trainer_device(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), val_size=10, gpu_resident=True)
    assert (datamodule.num_workers, datamodule.pin_memory) == (0, False)
    datamodule.setup("fit")
    assert isinstance(datamodule.train_set, TensorImageDataset)
    assert datamodule.train_set.images.device.type == "cpu"  # no trainer: the host

    if torch.cuda.is_available():
        datamodule.train_set.to("cuda")
        images, _ = next(iter(datamodule.train_dataloader()))
        assert images.is_cuda


@pytest.mark.parametrize("augment", ["none", "standard", "strong"])
def test_every_preset_yields_normalised_batches_on_both_paths(tmp_path: Path, augment: str) -> None:
    write_cifar10(tmp_path)
    for per_sample in (False, True):
        datamodule = CIFAR10DataModule(
            data_dir=str(tmp_path), val_size=10, augment=augment, per_sample_transforms=per_sample
        )
        datamodule.setup("fit")
        images, labels = next(iter(datamodule.train_dataloader()))
        assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32)
        assert -3 < images.mean() < 3 and len(labels) == len(images)
