"""The standard benchmarks — MNIST, Fashion-MNIST, KMNIST, CIFAR-10/100, SVHN — held in memory.

Each is read through its torchvision dataset class from ``data_dir`` (downloading there first when
``download=true``) and kept as one uint8 ``N x C x H x W`` tensor per split: a few hundred MB at
most, so batches are cut by indexing (see ``TensorImageDataset``), or — with
``gpu_resident=true`` — cut and augmented on the accelerator itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from urllib.error import URLError

import torch
from torch import Tensor
from torchvision import datasets
from torchvision.datasets import VisionDataset

from cnnzoo.data.base import ImageDataModule, split_count, stratified_split
from cnnzoo.errors import UserError

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "FashionMNISTDataModule",
    "KMNISTDataModule",
    "MNISTDataModule",
    "SVHNDataModule",
    "TorchvisionDataModule",
]


def _without_checksums(files: list[list[str]]) -> list[list[str | None]]:
    return [[*entry[:-1], None] for entry in files]


# torchvision checks the md5 of every extracted file each time a dataset is opened. The archive's
# md5 is still checked when downloading; afterwards we only ask that the files are there, so a
# re-packed copy (or the tests' small synthetic files in the same format) loads too.
class _CIFAR10(datasets.CIFAR10):
    train_list = _without_checksums(datasets.CIFAR10.train_list)
    test_list = _without_checksums(datasets.CIFAR10.test_list)
    meta = {**datasets.CIFAR10.meta, "md5": None}


class _CIFAR100(datasets.CIFAR100):
    train_list = _without_checksums(datasets.CIFAR100.train_list)
    test_list = _without_checksums(datasets.CIFAR100.test_list)
    meta = {**datasets.CIFAR100.meta, "md5": None}


class _SVHN(datasets.SVHN):
    split_list = {
        split: [url, name, None] for split, (url, name, _) in datasets.SVHN.split_list.items()
    }


class TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset loaded into memory, with a seeded, stratified validation split.

    ``val_size`` images are carved from the official training set (by ``split_seed``); the
    official test set is the test split. Subclasses name the dataset class, the files it reads
    and how to turn it into uint8 tensors.
    """

    source: ClassVar[str]  # where the files come from, for the "missing data" message
    default_val_size: ClassVar[int] = 5000

    def __init__(
        self,
        *,
        download: bool = False,
        val_size: int | float | None = None,
        augment: str = "standard",
        **kwargs: Any,
    ) -> None:
        super().__init__(augment=augment, **kwargs)
        self.download = download
        self.val_size = self.default_val_size if val_size is None else val_size

    # --- what each dataset defines ------------------------------------------------------------

    def expected_files(self, split: str) -> list[str]:
        """Paths, relative to ``data_dir``, that the ``split`` needs."""
        raise NotImplementedError

    def open_split(self, split: str, *, download: bool) -> VisionDataset:
        raise NotImplementedError

    @staticmethod
    def tensors(dataset: VisionDataset) -> tuple[Tensor, Tensor]:
        """The split as uint8 ``N x C x H x W`` images and int64 labels."""
        raise NotImplementedError

    def splits(self) -> tuple[str, ...]:
        """The splits to read; an ``extra`` split joins the training images."""
        return ("train", "test")

    # --- the shared machinery -----------------------------------------------------------------

    def _open(self, split: str, *, download: bool) -> VisionDataset:
        root = Path(self.data_dir)
        if not download:
            missing = [name for name in self.expected_files(split) if not (root / name).is_file()]
            if missing:
                raise UserError(
                    f"{type(self).__name__}: the {split} split is not in {root.resolve()} "
                    f"(missing: {', '.join(missing)}). Run with data.download=true to download it "
                    f"there, or place the files from {self.source} there yourself "
                    "(or point paths.data_dir at a copy)"
                )
            return self.open_split(split, download=False)
        try:
            return self.open_split(split, download=True)
        except (URLError, OSError, RuntimeError) as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            reason = lines[-1] if lines else type(error).__name__
            raise UserError(
                f"{type(self).__name__}: could not download the {split} split from {self.source} "
                f"into {root.resolve()} ({reason}). Check the network connection, or fetch the "
                "files on another machine and copy them there"
            ) from error

    def prepare_data(self) -> None:
        # once per machine, before setup: with the files present torchvision does not connect
        if self.download:
            for split in self.splits():
                self._open(split, download=True)

    def load(self) -> None:
        pools = {split: self.tensors(self._open(split, download=False)) for split in self.splits()}
        images, labels = pools["train"]
        n_val = split_count(self.val_size, len(labels), "data.val_size")
        val, train = stratified_split(labels, (n_val, len(labels) - n_val), seed=self.split_seed)
        train_images, train_labels = images[train], labels[train]
        if "extra" in pools:
            train_images = torch.cat([train_images, pools["extra"][0]])
            train_labels = torch.cat([train_labels, pools["extra"][1]])
        self.train_set = self.tensor_dataset(train_images, train_labels, train=True)
        self.val_set = self.tensor_dataset(images[val], labels[val], train=False)
        self.test_set = self.tensor_dataset(*pools["test"], train=False)


class _MNISTFamily(TorchvisionDataModule):
    """28 x 28 grey images in IDX files under ``data_dir/<DatasetName>/raw``."""

    dataset_class: ClassVar[type[datasets.MNIST]]
    in_channels = 1
    native_image_size = 28
    num_classes = 10

    def expected_files(self, split: str) -> list[str]:
        prefix = "train" if split == "train" else "t10k"
        folder = self.dataset_class.__name__
        return [
            f"{folder}/raw/{prefix}-images-idx3-ubyte",
            f"{folder}/raw/{prefix}-labels-idx1-ubyte",
        ]

    def open_split(self, split: str, *, download: bool) -> VisionDataset:
        return self.dataset_class(self.data_dir, train=split == "train", download=download)

    @staticmethod
    def tensors(dataset: VisionDataset) -> tuple[Tensor, Tensor]:
        return dataset.data.unsqueeze(1), dataset.targets.long()  # N x 1 x 28 x 28


class MNISTDataModule(_MNISTFamily):
    """MNIST handwritten digits (LeCun et al., 1998): 60,000 training and 10,000 test images."""

    dataset_class = datasets.MNIST
    source = datasets.MNIST.mirrors[0]
    class_names = tuple(str(digit) for digit in range(10))
    mean = (0.1307,)
    std = (0.3081,)
    hflip = False


class FashionMNISTDataModule(_MNISTFamily):
    """Fashion-MNIST (Xiao et al., 2017): Zalando's clothes in MNIST's format."""

    dataset_class = datasets.FashionMNIST
    source = datasets.FashionMNIST.mirrors[0]
    class_names = tuple(datasets.FashionMNIST.classes)
    mean = (0.2860,)
    std = (0.3530,)


class KMNISTDataModule(_MNISTFamily):
    """Kuzushiji-MNIST (Clanuwat et al., 2018): ten cursive Japanese hiragana."""

    dataset_class = datasets.KMNIST
    source = datasets.KMNIST.mirrors[0]
    class_names = tuple(datasets.KMNIST.classes)
    mean = (0.1918,)
    std = (0.3483,)
    hflip = False


class _CIFAR(TorchvisionDataModule):
    """32 x 32 colour images in pickled batches under ``data_dir/cifar-*-batches-py``."""

    dataset_class: ClassVar[type[datasets.CIFAR10]]
    in_channels = 3
    native_image_size = 32

    def expected_files(self, split: str) -> list[str]:
        cls = self.dataset_class
        files = cls.train_list if split == "train" else cls.test_list
        return [f"{cls.base_folder}/{name}" for name, _ in [*files, [cls.meta["filename"], None]]]

    def open_split(self, split: str, *, download: bool) -> VisionDataset:
        return self.dataset_class(self.data_dir, train=split == "train", download=download)

    @staticmethod
    def tensors(dataset: VisionDataset) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # N x 3 x 32 x 32
        return images, torch.as_tensor(dataset.targets, dtype=torch.long)


class CIFAR10DataModule(_CIFAR):
    """CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test images in 10 classes."""

    dataset_class = _CIFAR10
    source = datasets.CIFAR10.url
    num_classes = 10
    class_names = (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
    )  # fmt: skip
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(_CIFAR):
    """CIFAR-100 (Krizhevsky, 2009): 50,000 training and 10,000 test images in 100 classes."""

    dataset_class = _CIFAR100
    source = datasets.CIFAR100.url
    num_classes = 100
    class_names = tuple(
        """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
        butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
        crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house
        kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
        mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
        plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew
        skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank
        telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree
        wolf woman worm""".split()
    )
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)


class SVHNDataModule(TorchvisionDataModule):
    """Street View House Numbers (Netzer et al., 2011), cropped digits: 73,257 training and
    26,032 test images; ``use_extra=true`` adds the 531,131 easier ``extra`` images to training.
    """

    source = "http://ufldl.stanford.edu/housenumbers/"
    in_channels = 3
    native_image_size = 32
    num_classes = 10
    class_names = tuple(str(digit) for digit in range(10))
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    hflip = False

    def __init__(self, *, use_extra: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_extra = use_extra

    def splits(self) -> tuple[str, ...]:
        return ("train", "test", "extra") if self.use_extra else ("train", "test")

    def expected_files(self, split: str) -> list[str]:
        return [_SVHN.split_list[split][1]]

    def open_split(self, split: str, *, download: bool) -> VisionDataset:
        return _SVHN(self.data_dir, split=split, download=download)

    @staticmethod
    def tensors(dataset: VisionDataset) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(dataset.data), torch.from_numpy(dataset.labels).long()
