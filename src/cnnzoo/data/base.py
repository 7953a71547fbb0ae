"""The shared datamodule: global batch size, seeded splits, augmentation, in-memory datasets."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from cnnzoo.data.augment import (
    AUGMENT_PRESETS,
    AUTO_AUGMENT_POLICIES,
    BatchAugment,
    BatchMix,
    per_sample_transforms,
)
from cnnzoo.errors import UserError, check_choice

__all__ = [
    "ImageDataModule",
    "TensorImageDataset",
    "TransformedTensorDataset",
    "default_num_workers",
    "split_count",
    "stratified_split",
]

# worker processes for datasets decoded and augmented image by image
MAX_AUTO_WORKERS = 8


def default_num_workers() -> int:
    """All the CPUs this process may use (up to 8), leaving one to the training loop."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_AUTO_WORKERS, (cpus or 1) - 1))


def split_count(size: int | float, total: int, key: str) -> int:
    """How many of ``total`` images a split gets: ``size`` is a count, or a fraction in [0, 1)."""
    if isinstance(size, float) and 0 <= size < 1:
        return round(size * total)
    if isinstance(size, int) and not isinstance(size, bool) and 0 <= size < total:
        return size
    raise UserError(
        f"{key}={size} is not valid: give a fraction in [0, 1) or a count of images from 0 to "
        f"{total - 1} (of the {total} available)"
    )


def stratified_split(labels: Tensor, sizes: Sequence[int], *, seed: int) -> list[Tensor]:
    """Split indices into parts of the given sizes, each with the class mix of the whole set.

    Every class is shuffled with ``seed`` and dealt out in proportion, so the split is the same on
    every machine and does not depend on the run's own seed.
    """
    if sum(sizes) > len(labels):
        raise ValueError(f"split sizes {list(sizes)} add up to more than {len(labels)} samples")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    # each sample's relative position within its (shuffled) class; sorting by it interleaves the
    # classes, so every prefix — and so every part — keeps the class proportions
    position = torch.empty(len(labels), dtype=torch.float64)
    for label in labels.unique():
        members = order[labels[order] == label]
        position[members] = (torch.arange(len(members), dtype=torch.float64) + 0.5) / len(members)
    interleaved = order[torch.argsort(position[order], stable=True)]
    parts, start = [], 0
    for size in sizes:
        parts.append(interleaved[start : start + size])
        start += size
    return parts


class TensorImageDataset(Dataset):
    """Images held as one uint8 ``N x C x H x W`` tensor, cut, augmented and normalised per batch.

    ``__getitems__`` lets the DataLoader fetch a whole batch with one indexing operation instead of
    collating ``batch_size`` single images — the per-step cost of a hand-written loop. With an
    ``augment`` (a ``BatchAugment``) every image of the batch gets its own random crop and flip,
    still in a few tensor operations. With ``resize`` the batch is then resized to ``resize`` x
    ``resize`` pixels by one bilinear, antialiased interpolation (the images stay stored at their
    own size: 224 px CIFAR would take 49x the memory). ``to(device)`` makes the dataset
    GPU-resident: batches are then cut, augmented and resized on the accelerator.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        augment: BatchAugment | None = None,
        resize: int | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"expected uint8 N x C x H x W images, got {images.dtype} {tuple(images.shape)}"
            )
        self.images = images
        self.labels = labels.long()
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255
        self.augment = augment
        self.resize = resize

    def to(self, device: torch.device | str) -> TensorImageDataset:
        for name in ("images", "labels", "mean", "std"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, device=self.images.device)
        images = self.images[index]
        if self.augment is not None:
            images = self.augment(images)
        images = images.float()
        if self.resize is not None:
            size = (self.resize, self.resize)
            images = F.interpolate(images, size, mode="bilinear", antialias=True)
        images = (images - self.mean) / self.std
        if self.augment is not None:
            images = self.augment.erase(images)
        return images, self.labels[index]


class TransformedTensorDataset(Dataset):
    """uint8 ``N x C x H x W`` images in memory, each passed through a v2 ``transform`` alone."""

    def __init__(
        self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor]
    ) -> None:
        self.images = images
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.images[index]).as_subclass(Tensor), self.labels[index]


def keep_batch(batch: Any) -> Any:
    """Collate function for datasets whose ``__getitems__`` already returns a batch."""
    return batch


class ImageDataModule(L.LightningDataModule):
    """Base of every cnnzoo datamodule.

    Subclasses set the class attributes (or properties) below and implement ``load()``, which
    fills ``self.train_set``, ``self.val_set`` and ``self.test_set`` (``tensor_dataset`` builds
    them from uint8 tensors with the configured augmentation). ``batch_size`` is the global batch:
    under DDP each of the ``world_size`` processes loads ``batch_size / world_size`` images a step.

    Size: ``image_size`` is the side of the images the network sees. Datasets held in memory at
    one size (``native_image_size``: MNIST's 28, CIFAR's 32) default to it; another
    ``image_size`` (``data.image_size=224`` for ImageNet weights) resizes every batch after the
    augmentation, so the configs' ``${datamodule:image_size}`` — and the stem it picks — follow.

    Augmentation: ``augment`` is a preset (``none``, ``standard``: random crop with
    ``crop_padding`` + horizontal flip where ``hflip`` allows it, ``strong``: standard +
    ``auto_augment`` + ``random_erasing``, ``imagenet``: random resized crop + flip / resize +
    centre crop). ``mixup_alpha``/``cutmix_alpha`` > 0 mix a training batch with probability
    ``mix_prob`` after it reaches the device, giving soft targets.
    """

    num_classes: int
    in_channels: int
    # the side of the stored images, for datasets held in memory at one size; None for images
    # read from files of any size, which image_size alone describes
    native_image_size: int | None = None
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # mirrored digits are different digits (or none at all)
    hflip: bool = True

    def __init__(
        self,
        *,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int | None = 0,
        pin_memory: bool | None = False,
        persistent_workers: bool = True,
        split_seed: int = 0,
        augment: str = "none",
        crop_padding: int = 4,
        auto_augment: str = "randaugment",
        random_erasing: float = 0.25,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_prob: float = 1.0,
        per_sample_transforms: bool = False,
        gpu_resident: bool = False,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if image_size is not None and image_size < 1:
            raise ValueError(f"data.image_size must be a positive integer, got {image_size}")
        self._image_size = image_size
        check_choice("data.augment", augment, AUGMENT_PRESETS)
        check_choice("data.auto_augment", auto_augment, AUTO_AUGMENT_POLICIES)
        if gpu_resident and per_sample_transforms:
            raise UserError(
                "data.gpu_resident=true cuts and augments whole batches on the device; "
                "it cannot be combined with data.per_sample_transforms=true"
            )
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.per_sample_transforms = per_sample_transforms
        self.gpu_resident = gpu_resident
        if num_workers is None:
            # whole batches are cut from memory in one operation: workers would only add overhead
            num_workers = default_num_workers() if per_sample_transforms else 0
        self.num_workers = 0 if gpu_resident else num_workers
        if pin_memory is None:
            pin_memory = torch.cuda.is_available()
        self.pin_memory = pin_memory and not gpu_resident
        self.persistent_workers = persistent_workers and self.num_workers > 0
        self.split_seed = split_seed
        self.augment = augment
        self.crop_padding = crop_padding
        self.auto_augment = auto_augment
        self.random_erasing = random_erasing
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.mix_prob = mix_prob
        self.batch_mix: BatchMix | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def image_size(self) -> int:
        """The side of the images the network sees: the ``image_size`` given, else the native."""
        # a subclass without a native size (images read from files) has an image_size argument
        return self._image_size or self.native_image_size  # type: ignore[return-value]

    @property
    def resize_to(self) -> int | None:
        """The size batches are resized to, when it is not the one the images are stored at."""
        native = self.native_image_size
        return self.image_size if native is not None and self.image_size != native else None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    @property
    def batch_size_per_device(self) -> int:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world_size:
            raise ValueError(
                f"data.batch_size={self.batch_size} is the global batch and must divide evenly "
                f"across the {world_size} processes; pick a multiple of {world_size}"
            )
        return self.batch_size // world_size

    def load(self) -> None:
        """Fill ``train_set``, ``val_set`` and ``test_set``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.check_model()
        if self.train_set is None:
            self.load()
            if self.gpu_resident:
                self.to_device()
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            self.batch_mix = BatchMix(
                num_classes=self.num_classes,
                mixup_alpha=self.mixup_alpha,
                cutmix_alpha=self.cutmix_alpha,
                prob=self.mix_prob,
            )

    def to_device(self) -> None:
        """Move the in-memory datasets to the trainer's accelerator (the GPU-resident path)."""
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        for dataset in (self.train_set, self.val_set, self.test_set):
            if not isinstance(dataset, TensorImageDataset):
                raise UserError(
                    f"data.gpu_resident=true needs a dataset held in memory; "
                    f"{type(self).__name__} reads its images from disk"
                )
            dataset.to(device)

    def check_model(self) -> None:
        """An explicitly set model value that disagrees with the data is an error naming both."""
        model = self.trainer.lightning_module if self.trainer is not None else None
        self.check_against(getattr(model, "hparams", {}) or {})

    def check_against(self, hparams: Any, checkpoint: Any = None) -> None:
        """The model's ``hparams`` (an ``ImageClassifier``'s: ``num_classes``, ``net``) against
        this data: a disagreement is one error naming both values — for a model loaded from a
        ``checkpoint`` (eval, predict, export), the same one wherever it is loaded."""
        net = hparams.get("net") or {}
        for key, model_value, data_value in (
            ("model.num_classes", hparams.get("num_classes"), self.num_classes),
            ("model.net.num_classes", net.get("num_classes"), self.num_classes),
            ("model.net.in_channels", net.get("in_channels"), self.in_channels),
        ):
            if model_value is None or model_value == data_value:
                continue
            field = key.rsplit(".", 1)[1]
            if checkpoint is not None:
                raise UserError(
                    f"{checkpoint} holds a model with {key}={model_value} but "
                    f"{type(self).__name__} has {field}={data_value}; give the data it was "
                    "trained on (data=…), or leave data= out to use its run's"
                )
            raise UserError(
                f"{key}={model_value} but {type(self).__name__} has {field}={data_value}; "
                f"set {key}=${{datamodule:{field}}} (the default) or use matching data"
            )

    def eval_transform(self) -> Callable:
        """One image file's evaluation transform (predict.py): PIL image -> normalised
        ``C x H x W`` tensor, as the validation and test splits are transformed."""
        return self.sample_transforms(train=False)

    def tensor_dataset(self, images: Tensor, labels: Tensor, *, train: bool) -> Dataset:
        """A dataset over uint8 ``N x C x H x W`` images with this datamodule's augmentation."""
        if self.per_sample_transforms:
            return TransformedTensorDataset(images, labels, self.sample_transforms(train=train))
        augment = None
        if train and self.augment != "none":
            augment = BatchAugment(
                self.augment,
                hflip=self.hflip,
                crop_padding=self.crop_padding,
                auto_augment=self.auto_augment,
                random_erasing=self.random_erasing,
            )
        return TensorImageDataset(images, labels, self.mean, self.std, augment, self.resize_to)

    def sample_transforms(self, *, train: bool, resize_size: int | None = None) -> Callable:
        return per_sample_transforms(
            self.augment,
            train=train,
            image_size=self.image_size,
            source_size=self.native_image_size if self.resize_to else None,
            mean=self.mean,
            std=self.std,
            hflip=self.hflip,
            crop_padding=self.crop_padding,
            auto_augment=self.auto_augment,
            random_erasing=self.random_erasing,
            resize_size=resize_size,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # only (images, labels) batches: the model summary passes the module's example input (one
        # tensor) through this hook too, while the trainer is in its training stage
        if (
            self.batch_mix
            and self.trainer is not None
            and self.trainer.training
            and isinstance(batch, (tuple, list))
        ):
            batch = self.batch_mix(*batch)
        return batch

    def _loader(self, dataset: Dataset | None, *, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not been run")
        batched = hasattr(dataset, "__getitems__")
        return DataLoader(
            dataset,
            batch_size=self.batch_size_per_device,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=keep_batch if batched else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
