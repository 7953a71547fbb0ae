"""Random uint8 images held in memory, through the same ``ImageDataModule`` code as real data."""

from __future__ import annotations

import torch

from cnnzoo.data.base import ImageDataModule

__all__ = ["RandomImageDataModule"]


class RandomImageDataModule(ImageDataModule):
    """``train_size`` / ``val_size`` / ``test_size`` random 3 x 32 x 32 images, 10 classes.

    Speed does not depend on what the pixels show, so a benchmark needs no dataset on disk.
    ``image_size`` is a class attribute (the config resolvers read it without an instance):
    ``RandomImageNetSizeDataModule`` gives 224 x 224.
    """

    num_classes = 10
    in_channels = 3
    image_size = 32
    class_names = tuple(str(i) for i in range(10))
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(
        self, *, train_size: int = 1024, val_size: int = 256, test_size: int = 256, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.sizes = (train_size, val_size, test_size)

    def load(self) -> None:
        generator = torch.Generator().manual_seed(self.split_seed)
        shape = (self.in_channels, self.image_size, self.image_size)
        sets = []
        for size, train in zip(self.sizes, (True, False, False), strict=True):
            images = torch.randint(0, 256, (size, *shape), dtype=torch.uint8, generator=generator)
            labels = torch.randint(0, self.num_classes, (size,), generator=generator)
            sets.append(self.tensor_dataset(images, labels, train=train))
        self.train_set, self.val_set, self.test_set = sets


class RandomImageNetSizeDataModule(RandomImageDataModule):
    image_size = 224
