"""The user's own images (and ImageNet, Imagenette…): one sub-folder per class.

Two layouts are read from ``path``:

- ImageNet style: ``train/<class>/*`` and ``val/<class>/*`` (and optionally ``test/<class>/*``);
  ``val`` validates, and is also the test split unless a ``test`` folder exists;
- one folder of ``<class>/*``: ``val_fraction`` of each class, chosen by ``split_seed``, becomes
  the validation (and test) split.

Images are decoded and augmented one by one in worker processes (``torchvision.transforms.v2``);
grey, RGBA and palette images are converted to ``channels``. Setup lists the files in one pass and
checks each image's header once (``check_images=header``; the result is cached, see
``cnnzoo.data.image_files``) or trusts the file names (``none``). Files that are not readable
images are left out with one warning naming them (``on_bad_image=warn``) or stop the run
(``error``); ``python -m cnnzoo.data verify`` decodes every image in full.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from cnnzoo.data.base import ImageDataModule, stratified_split
from cnnzoo.data.image_files import CHECKS, HeaderCache, UnreadableImage, image_files, load_image
from cnnzoo.errors import UserError, check_choice

__all__ = ["ImageFolderDataModule"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the usual evaluation resize: 224 / 256 of the shorter side is kept by the centre crop
CENTER_CROP_FRACTION = 0.875


# a sample that cannot be decoded is replaced by the next one; this many in a row is not a bad
# file but a broken dataset (timm's ImageDataset gives up after as many)
MAX_BAD_IN_A_ROW = 50


def _inside(target: Path, folder: Path) -> bool:
    return target == folder or folder in target.parents or target in folder.parents


def _class_folders(root: Path, dataset: Path) -> list[str]:
    """The class folders under ``root``. A symlinked one that leads back into the dataset
    (``loop -> .``, ``val/cat -> ../train/cat``) is not followed, with a warning naming it: it
    would be a class holding other classes' images. One leading elsewhere is a class."""
    names = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            continue
        if entry.is_symlink() and _inside(entry.resolve(), dataset.resolve()):
            log.warning(
                "%s is a symlink to %s, inside the dataset: not followed (not a class)",
                entry,
                entry.resolve(),
            )
            continue
        names.append(entry.name)
    return names


class ImageFileDataset(Dataset):
    """``(path, label)`` samples decoded with PIL, converted to ``mode`` and transformed.

    A file that passed the header check (or was never checked: ``check_images=none``) but
    cannot be decoded — truncated, not an image, a decompression bomb — is replaced by the next
    sample, with a warning naming it (once per worker process), unless
    ``on_bad_image="error"``: an epoch never dies halfway through on one bad file. Replaced,
    not dropped, as timm's ``ImageDataset`` does: the batch keeps its size (so every DDP rank
    takes the same steps, and the batch statistics and a compiled graph see one shape), the
    replacement is the same whatever the worker timing, and one image seen twice an epoch
    costs nothing. ``MAX_BAD_IN_A_ROW`` failures in a row stop the run naming the last.
    """

    def __init__(
        self,
        samples: list[tuple[str, int]],
        transform: Callable[[Image.Image], Tensor],
        *,
        mode: str,
        on_bad_image: str = "warn",
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.mode = mode
        self.on_bad_image = on_bad_image
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        tries = min(len(self.samples), MAX_BAD_IN_A_ROW)
        for offset in range(tries):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                image = load_image(path, self.mode)
            except UnreadableImage as error:
                if self.on_bad_image == "error":
                    raise UserError(f"{path} is not a readable image ({error})") from None
                if path not in self._warned:
                    self._warned.add(path)
                    log.warning("Skipping %s, which cannot be decoded (%s)", path, error)
                continue
            return self.transform(image).as_subclass(Tensor), label
        raise UserError(
            f"{tries} images in a row cannot be decoded, the last {path}; list the bad ones with "
            "`python -m cnnzoo.data verify data=imagefolder data.path=<folder>`"
        )


class ImageFolderDataModule(ImageDataModule):
    """Images in class folders under ``path``, at ``image_size`` pixels, ``channels`` channels."""

    def __init__(
        self,
        *,
        path: str | None = None,
        image_size: int = 224,
        resize_size: int | None = None,
        channels: int = 3,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        val_fraction: float = 0.1,
        check_images: str = "header",
        on_bad_image: str = "warn",
        augment: str = "imagenet",
        per_sample_transforms: bool = True,
        **kwargs: Any,
    ) -> None:
        if not per_sample_transforms:
            raise UserError(
                "data=imagefolder reads images from disk one by one: keep "
                "data.per_sample_transforms=true"
            )
        super().__init__(
            augment=augment, per_sample_transforms=True, image_size=image_size, **kwargs
        )
        if channels not in (1, 3):
            raise UserError(f"data.channels={channels}: choose 1 (grey) or 3 (RGB)")
        if len(mean) != channels or len(std) != channels:
            raise UserError(f"data.mean and data.std need {channels} values, one per channel")
        # absolute: the samples stay valid if the working directory changes, and the header cache
        # is one per folder, whatever path leads there
        self.path = Path(os.path.abspath(path if path is not None else self.data_dir))
        self.resize_size = resize_size or round(image_size / CENTER_CROP_FRACTION)
        self.in_channels = channels
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.val_fraction = val_fraction
        self.check_images = check_choice("data.check_images", check_images, CHECKS)
        self.on_bad_image = check_choice("data.on_bad_image", on_bad_image, ("warn", "error"))
        self._class_names: tuple[str, ...] | None = None

    # --- layout -------------------------------------------------------------------------------

    @property
    def layout(self) -> dict[str, Path]:
        """The class-folder roots of each split present (``train`` at least)."""
        if not self.path.is_dir():
            raise UserError(
                f"data.path={self.path}: no such folder. Put your images there as <class>/<image> "
                "(or train/<class>/… and val/<class>/…), or set data.path to where they are"
            )
        if (self.path / "train").is_dir():
            return {
                split: self.path / split
                for split in ("train", "val", "test")
                if (self.path / split).is_dir()
            }
        return {"train": self.path}

    # read-only, unlike the base's class attributes: the classes are the folders on disk
    @property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._class_names is None:
            self._class_names = self._scan_classes()
        return self._class_names

    def _scan_classes(self) -> tuple[str, ...]:
        layout = self.layout
        names = _class_folders(layout["train"], self.path)
        if not names:
            raise UserError(f"{layout['train']} holds no class folders (expected <class>/<image>)")
        for split, root in layout.items():
            if split == "train":
                continue
            other = _class_folders(root, self.path)
            if other != names:
                raise UserError(
                    f"{root} and {layout['train']} hold different classes: only in {split}: "
                    f"{sorted(set(other) - set(names)) or 'none'}; only in train: "
                    f"{sorted(set(names) - set(other)) or 'none'}"
                )
        return tuple(names)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.class_names)

    # --- loading ------------------------------------------------------------------------------

    def _labelled_files(self, root: Path) -> list[list[str]]:
        """The image files of each class folder under ``root``, in label order."""
        return [list(image_files(root / name)) for name in self.class_names]

    def all_files(self) -> list[str]:
        """Every file of every split with an image extension, unchecked (``verify`` decodes
        them)."""
        return [
            path
            for root in self.layout.values()
            for files in self._labelled_files(root)
            for path in files
        ]

    def _samples(self) -> dict[str, list[tuple[str, int]]]:
        """The ``(path, label)`` samples of each split; the files that are not readable images
        named in one warning (or error) for all splits."""
        headers = HeaderCache(self.path) if self.check_images == "header" else None
        samples: dict[str, list[tuple[str, int]]] = {}
        empty: list[str] = []
        for split, root in self.layout.items():
            samples[split] = []
            for label, files in enumerate(self._labelled_files(root)):
                if headers is not None:
                    files = headers.readable(files)
                if not files:
                    empty.append(str(root / self.class_names[label]))
                samples[split] += [(path, label) for path in files]
        if headers is not None:
            headers.save()
            self._report_bad(headers.bad)
        if empty:
            raise UserError(f"class folders with no images: {', '.join(empty)}")
        return samples

    def _report_bad(self, bad: list[str]) -> None:
        if not bad:
            return
        names = ", ".join(bad[:20]) + (" …" if len(bad) > 20 else "")
        if self.on_bad_image == "error":
            raise UserError(f"{len(bad)} files are not readable images: {names}")
        log.warning("Skipping %d files that are not readable images: %s", len(bad), names)

    def eval_transform(self) -> Callable:
        return self.sample_transforms(train=False, resize_size=self.resize_size)

    def _dataset(self, samples: list[tuple[str, int]], *, train: bool) -> ImageFileDataset:
        transform = self.sample_transforms(train=train, resize_size=self.resize_size)
        mode = "RGB" if self.in_channels == 3 else "L"
        return ImageFileDataset(samples, transform, mode=mode, on_bad_image=self.on_bad_image)

    def load(self) -> None:
        splits = self._samples()
        train = splits["train"]
        if "val" in splits:
            val = splits["val"]
        else:
            if not 0 < self.val_fraction < 1:
                raise UserError(
                    f"data.val_fraction={self.val_fraction} must lie strictly between 0 and 1 "
                    f"when {self.path} has no val/ folder"
                )
            labels = torch.tensor([label for _, label in train])
            n_val = max(1, round(self.val_fraction * len(train)))
            val_index, train_index = stratified_split(
                labels, (n_val, len(train) - n_val), seed=self.split_seed
            )
            # plain ints: indexing with a million 0-d tensors takes seconds
            train, val = (
                [train[i] for i in train_index.tolist()],
                [train[i] for i in val_index.tolist()],
            )
        test = splits.get("test", val)
        self.train_set = self._dataset(train, train=True)
        self.val_set = self._dataset(val, train=False)
        self.test_set = self._dataset(test, train=False)
