"""Augmentation as config: presets, the vectorised batch augmentation and batch-level MixUp/CutMix.

Two equivalent ways to augment small in-memory datasets:

- ``per_sample_transforms``: a ``torchvision.transforms.v2`` pipeline applied to each image in the
  DataLoader's workers — the standard path, and the only one for images read from disk;
- ``BatchAugment``: the same random crop with padding, flip and random erasing, drawn per sample
  but applied to a whole ``N x C x H x W`` batch with a handful of tensor operations, on whatever
  device the images live on. This is what makes the GPU-resident path fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from cnnzoo.errors import UserError, check_choice

__all__ = [
    "AUGMENT_PRESETS",
    "AUTO_AUGMENT_POLICIES",
    "BatchAugment",
    "BatchMix",
    "auto_augment_policy",
    "per_sample_transforms",
]

AUGMENT_PRESETS = ("none", "standard", "strong", "imagenet")
AUTO_AUGMENT_POLICIES = ("randaugment", "trivialaugment", "autoaugment")
# RandomErasing's defaults (Zhong et al., 2017): erase 2-33% of the image, aspect ratio 0.3-3.3
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


def auto_augment_policy(name: str) -> v2.Transform:
    """The ``strong`` preset's policy: RandAugment, TrivialAugmentWide or AutoAugment (ImageNet)."""
    check_choice("data.auto_augment", name, AUTO_AUGMENT_POLICIES)
    if name == "randaugment":
        return v2.RandAugment()
    if name == "trivialaugment":
        return v2.TrivialAugmentWide()
    return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)


def per_sample_transforms(
    preset: str,
    *,
    train: bool,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    hflip: bool,
    crop_padding: int,
    auto_augment: str,
    random_erasing: float,
    resize_size: int | None = None,
    source_size: int | None = None,
) -> v2.Compose:
    """The v2 pipeline for one uint8 image tensor (or PIL image) -> a normalised float tensor.

    ``standard``/``strong`` crop with padding (images already at ``image_size``); ``imagenet``
    crops a random resized region for training and resizes + centre-crops for evaluation.
    ``strong`` adds ``auto_augment``'s policy and random erasing. ``source_size``: the side of
    square images stored at another size than ``image_size`` (CIFAR at ``data.image_size=224``):
    training augments them at that size, then resizes them, as the batched path does.
    """
    check_choice("data.augment", preset, AUGMENT_PRESETS)
    resize_size = resize_size or image_size
    steps: list[v2.Transform] = [v2.ToImage()]
    if preset == "imagenet" or not train:
        if preset == "imagenet" and train:
            steps.append(v2.RandomResizedCrop(image_size, antialias=True))
        else:
            steps += [v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size)]
    elif preset in ("standard", "strong"):
        steps.append(v2.RandomCrop(source_size or image_size, padding=crop_padding))
    if train and preset != "none" and hflip:
        steps.append(v2.RandomHorizontalFlip())
    if train and preset == "strong":
        steps.append(auto_augment_policy(auto_augment))
    if train and preset != "imagenet" and source_size not in (None, image_size):
        steps.append(v2.Resize(image_size, antialias=True))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if train and preset == "strong" and random_erasing > 0:
        steps.append(v2.RandomErasing(random_erasing, scale=ERASE_SCALE, ratio=ERASE_RATIO))
    return v2.Compose(steps)


def random_crop(images: Tensor, padding: int) -> Tensor:
    """Crop each image at its own random offset from a zero-padded copy (``RandomCrop``)."""
    n, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device)
    rows = top + torch.arange(height, device=images.device)  # N x H
    cols = left + torch.arange(width, device=images.device)  # N x W
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(images: Tensor) -> Tensor:
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_erasing(images: Tensor, p: float) -> Tensor:
    """Zero one random rectangle per image with probability ``p`` (``RandomErasing(value=0)``)."""
    n, _, height, width = images.shape
    device = images.device
    area = height * width * torch.empty(n, device=device).uniform_(*ERASE_SCALE)
    log_ratio = torch.empty(n, device=device).uniform_(*torch.tensor(ERASE_RATIO).log().tolist())
    aspect = log_ratio.exp()
    h = (area * aspect).sqrt().round().clamp(1, height).long()
    w = (area / aspect).sqrt().round().clamp(1, width).long()
    top = (torch.rand(n, device=device) * (height - h + 1)).long()
    left = (torch.rand(n, device=device) * (width - w + 1)).long()
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # N x H
    inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # N x W
    erase = inside_rows[:, :, None] & inside_cols[:, None, :]  # N x H x W
    erase &= (torch.rand(n, device=device) < p)[:, None, None]
    return images.masked_fill(erase[:, None], 0.0)


class BatchAugment:
    """The ``standard``/``strong`` training augmentation, drawn per image but run per batch.

    ``__call__`` works on uint8 pixels (crop with zero padding, flip, then the ``strong`` preset's
    policy image by image); ``erase`` works on the normalised batch, as ``RandomErasing`` does.
    """

    def __init__(
        self,
        preset: str,
        *,
        hflip: bool,
        crop_padding: int,
        auto_augment: str = "randaugment",
        random_erasing: float = 0.0,
    ) -> None:
        check_choice("data.augment", preset, AUGMENT_PRESETS)
        if preset == "imagenet":
            raise UserError(
                "data.augment=imagenet (random resized crops) runs per image: "
                "set data.per_sample_transforms=true (and data.gpu_resident=false)"
            )
        self.preset = preset
        self.hflip = hflip
        self.crop_padding = crop_padding
        self.policy = auto_augment_policy(auto_augment) if preset == "strong" else None
        self.random_erasing = random_erasing if preset == "strong" else 0.0

    def __call__(self, images: Tensor) -> Tensor:
        if self.preset == "none":
            return images
        if self.crop_padding > 0:
            images = random_crop(images, self.crop_padding)
        if self.hflip:
            images = random_hflip(images)
        if self.policy is not None:
            # the policies pick one operation per call, so each image needs its own call
            images = torch.stack([self.policy(image) for image in images])
        return images

    def erase(self, images: Tensor) -> Tensor:
        return random_erasing(images, self.random_erasing) if self.random_erasing > 0 else images


class BatchMix:
    """MixUp (Zhang et al., 2018) / CutMix (Yun et al., 2019) on a training batch -> soft targets.

    With probability ``prob`` a batch is mixed; when both alphas are positive, MixUp or CutMix is
    chosen with equal odds. Unmixed batches keep their integer labels.
    """

    def __init__(
        self, *, num_classes: int, mixup_alpha: float, cutmix_alpha: float, prob: float
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise UserError(f"data.mix_prob={prob} must lie in [0, 1]")
        mixes: list[v2.Transform] = []
        if mixup_alpha > 0:
            mixes.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixes.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixes) if mixes else None
        self.prob = prob

    def __bool__(self) -> bool:
        return self.mix is not None and self.prob > 0

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if self.mix is None or labels.ndim > 1 or torch.rand(()).item() >= self.prob:
            return images, labels
        return self.mix(images, labels)
