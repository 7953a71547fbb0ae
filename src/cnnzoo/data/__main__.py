"""See what the augmentation does: a PNG grid of augmented training samples with class names.

    python -m cnnzoo.data show                                   # the bundled MNIST sample
    python -m cnnzoo.data show data=cifar10 data.augment=strong data.cutmix_alpha=1.0
    python -m cnnzoo.data show data=imagefolder data.path=/data/pets --out pets.png --n 16

Every argument of the form ``key=value`` is a Hydra override of the training config, so the grid
shows exactly what ``python train.py`` with the same overrides would train on (MixUp/CutMix
included; a mixed image is titled with its two strongest classes and their weights).
"""

from __future__ import annotations

import argparse
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
from cnnzoo.errors import UserError

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
    args = parser.parse_args(argv)
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose("train", overrides=list(args.overrides))
        datamodule = instantiate(cfg.data)
        images, labels = augmented_batch(datamodule, args.n, seed=args.seed)
    except (UserError, HydraException) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    save_grid(datamodule, images, labels, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
