"""ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385).

One class covers both halves of the paper: the ImageNet ResNets of Table 1 (four stages of
64/128/256/512 channels) and the CIFAR-10 ResNets of §4.2 (three stages of 16/32/64 channels,
n basic blocks each, depth 6n + 2, parameter-free option-A shortcuts). A variant is a row of
numbers in the tables at the bottom. Module names equal torchvision's, so its state dicts load
with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.errors import check_choice
from cnnzoo.models.common import STEMS
from cnnzoo.models.features import (
    FeatureStage,
    HeadSpec,
    ZooNet,
    global_pool_layer,
    linear_classifier,
)
from cnnzoo.models.registry import register, same_layout

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ZeroPadShortcut", "conv1x1", "conv3x3"]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A of §3.3: an identity that subsamples by ``stride`` and appends zero channels.

    It has no parameters, which is why the CIFAR nets of §4.2 have "exactly the same depth,
    width, and number of parameters as the plain counterparts".
    """

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # pads dim 1 (channels) at the end


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the shortcut (Fig. 2 left; ResNet-18/34 and the CIFAR nets)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        if width_per_group != 64:
            raise ValueError(
                f"BasicBlock has no width_per_group (got {width_per_group}); "
                "wide variants use block='bottleneck'"
            )
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Identity() if downsample is None else downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by 4 (Fig. 5 right; ResNet-50/101/152).

    The stride sits on the 3x3 conv, not on the first 1x1 as in the paper: torchvision's
    "ResNet v1.5", which is more accurate (https://ngc.nvidia.com/catalog/model-scripts/
    nvidia:resnet_50_v1_5_for_pytorch) and needed for its weights to mean the same thing.
    ``width_per_group`` scales the inner width (128 gives torchvision's wide_resnet50_2).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        width = planes * width_per_group // 64
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Identity() if downsample is None else downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


BLOCKS: dict[str, type[BasicBlock | Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
SHORTCUTS = ("projection", "zero_pad")  # the paper's options B and A


def _shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "zero_pad":
        return ZeroPadShortcut(out_channels - in_channels, stride)
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class ResNet(ZooNet):
    """ResNet v1: stem, stages of residual blocks (the first of each stage but the first strides
    by 2), global average pool, linear classifier.

    Feature stages (timm's): the stem before its max-pool (``relu``), then ``layer1``, … — at
    strides 2, 4, 8, 16, 32 with the ImageNet stem, 1, 1, 2, 4, 8 with the small one.

    Init as the paper (§3.4, He et al. 2015 arXiv:1502.01852): Kaiming-normal (fan_out) convs,
    BN weight 1 bias 0, and with ``zero_init_residual`` the last BN of every residual branch
    starts at 0 so each block starts as the identity (Goyal et al. 2017, arXiv:1706.02677).

    ``widths`` are the per-stage ``planes`` (block output is ``planes * expansion``);
    ``shortcut`` is "projection" (option B, torchvision) or "zero_pad" (option A, the CIFAR nets).
    """

    head_spec = HeadSpec(classifier="fc")

    def __init__(
        self,
        *,
        block: str,
        layers: Sequence[int],
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: str = "imagenet",
        widths: Sequence[int] = (64, 128, 256, 512),
        shortcut: str = "projection",
        width_per_group: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_choice("block", block, BLOCKS)
        check_choice("stem", stem, STEMS)
        check_choice("shortcut", shortcut, SHORTCUTS)
        if len(layers) != len(widths) or min(layers, default=0) < 1:
            raise ValueError(
                f"need one block count >= 1 per stage width, got layers={tuple(layers)}"
                f" for widths={tuple(widths)}"
            )
        block_cls = BLOCKS[block]
        make_block = partial(block_cls, width_per_group=width_per_group)

        if stem == "imagenet":  # 7x7/2 conv + 3x3/2 max-pool (Table 1, conv1 and conv2_x)
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:  # one 3x3 conv at full resolution (§4.2)
            self.conv1 = conv3x3(in_channels, widths[0])
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)

        # Feature stages: the stem before its max-pool, then every layer (N x 64 x 56 x 56 after
        # the stem of ResNet-50 at 224 px ... N x 2048 x 7 x 7 after layer4; small stem, CIFAR's
        # ResNet-20: N x 16 x 32 x 32 ... N x 64 x 8 x 8)
        imagenet = stem == "imagenet"
        stages = [FeatureStage(("conv1", "bn1", "relu"), widths[0], 2 if imagenet else 1)]
        stride = 4 if imagenet else 1  # layer1 reads the max-pooled stem
        channels = widths[0]
        for i, (planes, depth) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for j in range(depth):
                block_stride = 2 if i > 0 and j == 0 else 1
                out_channels = planes * block_cls.expansion
                downsample = _shortcut(shortcut, channels, out_channels, block_stride)
                blocks.append(
                    make_block(channels, planes, stride=block_stride, downsample=downsample)
                )
                channels = out_channels
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))  # torchvision's names
            stride *= 2 if i > 0 else 1
            modules = ("maxpool", "layer1") if i == 0 else (f"layer{i + 1}",)
            stages.append(FeatureStage(modules, channels, stride))
        self.set_stages(stages)
        self.num_stages = len(layers)
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = channels

        self.global_pool = global_pool_layer()
        self.fc = linear_classifier(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # fc keeps PyTorch's default init, as torchvision.
        if zero_init_residual:  # after the loop above, which set every BN weight to 1
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    @property
    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]


PAPER = "He et al. 2016, Deep Residual Learning, arXiv:1512.03385"

# The torchvision-named ImageNet ResNets (Table 1), projection shortcuts (option B).
IMAGENET_RESNETS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
# The CIFAR-10 ResNets of §4.2: depth 6n + 2 -> n blocks per stage. Option A shortcuts, as the
# paper uses for CIFAR; they give the published counts (0.27M for ResNet-20 ... 1.7M for -110).
CIFAR_RESNETS: dict[str, int] = {f"resnet{6 * n + 2}": n for n in (3, 5, 7, 9, 18)}

for _name, (_block, _layers) in IMAGENET_RESNETS.items():
    register(_name, ResNet, paper=PAPER, torchvision=same_layout, block=_block, layers=_layers)
register(
    "wide_resnet50_2",
    ResNet,
    paper="Zagoruyko & Komodakis 2016, Wide Residual Networks, arXiv:1605.07146 "
    "(torchvision's bottleneck version: inner 3x3 width doubled)",
    torchvision=same_layout,
    block="bottleneck",
    layers=(3, 4, 6, 3),
    width_per_group=128,
)
for _name, _n in CIFAR_RESNETS.items():
    register(
        _name,
        ResNet,
        paper=f"{PAPER}, §4.2",
        block="basic",
        layers=(_n, _n, _n),
        widths=(16, 32, 64),
        shortcut="zero_pad",
        stem="small",
    )
