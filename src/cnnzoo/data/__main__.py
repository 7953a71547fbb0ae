"""See what the augmentation does (``show``: a PNG grid of augmented training samples with class
names), and check an image folder (``verify``: decode every image, list the ones that fail).

    python -m cnnzoo.data show                                   # the bundled MNIST sample
    python -m cnnzoo.data show data=cifar10 data.augment=strong data.cutmix_alpha=1.0
    python -m cnnzoo.data show data=imagefolder data.path=/data/pets --out pets.png --n 16
    python -m cnnzoo.data verify data=imagefolder data.path=/data/pets --workers 8

Every argument of the form ``key=value`` is a Hydra override of the training config, so the grid
shows exactly what ``python train.py`` with the same overrides would train on (MixUp/CutMix
included; a mixed image is titled with its two strongest classes and their weights). ``verify``
exits with status 1 if any image fails to decode (training setup only reads the headers, so such
a file would be skipped mid-epoch), 0 if all decode.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from hydra.utils import instantiate
from torch import Tensor

from cnnzoo import plots
from cnnzoo.config import CONFIG_MODULE
from cnnzoo.data.base import ImageDataModule
from cnnzoo.data.image_files import decode_errors
from cnnzoo.data.imagefolder import ImageFolderDataModule
from cnnzoo.errors import UserError

BAD_IMAGES = 1
USAGE_ERROR = 2


def augmented_batch(datamodule: ImageDataModule, n: int, *, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` training images as the model would receive them (after batch mixing), and targets."""
    torch.manual_seed(seed)
    datamodule.setup("fit")
    batch_size, datamodule.batch_size = datamodule.batch_size, n
    try:
        images, labels = next(iter(datamodule.train_dataloader()))
    finally:
        datamodule.batch_size = batch_size
    if datamodule.batch_mix:
        images, labels = datamodule.batch_mix(images, labels)
    return images.cpu(), labels.cpu()


def save_grid(datamodule: ImageDataModule, images: Tensor, labels: Tensor, out: Path) -> None:
    figure = plots.image_grid_figure(
        plots.displayable(images.numpy(), datamodule.mean, datamodule.std),
        [plots.target_caption(label, datamodule.class_names) for label in labels.numpy()],
        title=f"{type(datamodule).__name__}: augment={datamodule.augment}",
    )
    plots.save(figure, out)


def verify(datamodule: ImageDataModule, *, workers: int) -> int:
    """Decode every image of an image folder, print the ones that fail; ``BAD_IMAGES`` if any."""
    if not isinstance(datamodule, ImageFolderDataModule):
        raise UserError(
            f"verify decodes image folders (data=imagefolder data.path=<folder>); "
            f"{type(datamodule).__name__} is not one"
        )
    files = datamodule.all_files()
    print(f"decoding {len(files):,} images under {datamodule.path} (workers: {workers})")
    bad = 0
    for path, error in decode_errors(files, workers=workers):
        print(f"{path}: {error}", flush=True)
        bad += 1
    if bad:
        print(f"{bad:,} of {len(files):,} images cannot be decoded")
        return BAD_IMAGES
    print(f"all {len(files):,} images decode")
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnzoo.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="write a PNG grid of augmented training samples")
    show.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=cifar10")
    show.add_argument("--out", type=Path, default=Path("augmented.png"), help="the PNG to write")
    show.add_argument("--n", type=int, default=32, help="how many samples")
    show.add_argument("--seed", type=int, default=0)
    check = commands.add_parser(
        "verify", help="decode every image of data=imagefolder; print those that fail"
    )
    check.add_argument("overrides", nargs="*", help="Hydra overrides: data=imagefolder data.path=…")
    check.add_argument("--workers", type=int, default=_cpus(), help="decoding processes")
    args = parser.parse_args(argv)
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose("train", overrides=list(args.overrides))
        datamodule = instantiate(cfg.data)
        if args.command == "verify":
            return verify(datamodule, workers=args.workers)
        images, labels = augmented_batch(datamodule, args.n, seed=args.seed)
    except (UserError, HydraException) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    save_grid(datamodule, images, labels, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
