"""Pre-activation ResNet (He et al. 2016b, "Identity Mappings in Deep Residual Networks",
arXiv:1603.05027) and Wide ResNet (Zagoruyko & Komodakis 2016, arXiv:1605.07146).

A pre-activation unit puts BN and ReLU *before* each conv (Fig. 1b), so the shortcut path is a
pure identity from block to block; the network ends with one BN-ReLU before pooling. A WRN is the
same network built from basic units widened by ``k``, with dropout between the two convs (§2.4).
"""

from __future__ import annotations

from collections.abc import Sequence

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
from cnnzoo.models.registry import register

__all__ = ["PreActBlock", "PreActBottleneck", "PreActResNet", "wide_resnet"]


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    padding = kernel_size // 2
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    # 1x1 conv without BN: the next unit's pre-activation normalises the sum (fb.resnet.torch).
    if stride == 1 and in_channels == out_channels:
        return None
    return _conv(in_channels, out_channels, 1, stride)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice (Fig. 4e); with ``dropout`` the WRN unit B(3,3) with dropout
    between the convs (Zagoruyko & Komodakis §2.4)."""

    expansion = 1

    def __init__(
        self, in_channels: int, planes: int, *, stride: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv(in_channels, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv(planes, planes, 3)
        self.shortcut = _projection(in_channels, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # A projection reads the pre-activated input (as fb.resnet.torch, the WRN code and
        # kuangliu); an identity shortcut passes x untouched, which is the point of the paper.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (strided), BN-ReLU-conv1x1 expanding by 4 (the
    ResNet-164/1001 unit of §4)."""

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, *, stride: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dropout > 0:
            raise ValueError(
                "dropout between convs is the WRN basic unit's; "
                "no paper defines it for bottlenecks (use block='basic')"
            )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv(in_channels, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * self.expansion, 1)
        self.shortcut = _projection(in_channels, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)  # see PreActBlock
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


BLOCKS: dict[str, type[PreActBlock | PreActBottleneck]] = {
    "basic": PreActBlock,
    "bottleneck": PreActBottleneck,
}


class PreActResNet(ZooNet):
    """Stem conv, stages of pre-activation units (the first of each stage but the first strides
    by 2), final BN-ReLU, global average pool, linear classifier.

    Init as the paper's code (fb.resnet.torch): Kaiming-normal (fan_out) convs, BN weight 1
    bias 0, classifier bias 0. With ``zero_init_residual`` (the default) the last conv of every
    residual branch starts at zero, so every unit with an identity shortcut starts as the
    identity: timm's ``zero_init_last`` for its pre-activation ResNetV2, the idea of Goyal et al.
    2017 (arXiv:1706.02677, §5.1). Without it nothing bounds the sum of the branches: each unit
    adds a branch about as large as its input, the activations grow ~1.36x per unit, and
    preact_resnet1001 (333 units) overflows to NaN at init in eval mode (issue #11).

    ``widths`` are the per-stage ``planes``; ``stem_width`` is the stem conv's output (16 in
    the CIFAR papers). The "small" stem is that one 3x3 conv; "imagenet" is a 7x7/2 conv and a
    3x3/2 max-pool with no BN-ReLU between them, as timm's pre-activation ResNetV2: the first
    unit's own pre-activation follows.

    Feature stages: the stem conv, then every layer (strides 2, 4, 8, 16, 32 with the ImageNet
    stem; 1, 1, 2, 4 with the small one on the three-stage CIFAR nets); the final BN-ReLU is
    the trunk's norm (``forward_intermediates(norm=True)`` applies it to the last map).
    """

    head_spec = HeadSpec(classifier="fc")

    def __init__(
        self,
        *,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int],
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: str = "small",
        stem_width: int = 16,
        dropout: float = 0.0,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        check_choice("block", block, BLOCKS)
        check_choice("stem", stem, STEMS)
        if len(layers) != len(widths) or min(layers, default=0) < 1:
            raise ValueError(
                f"need one block count >= 1 per stage width, got layers={tuple(layers)}"
                f" for widths={tuple(widths)}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        block_cls = BLOCKS[block]

        imagenet = stem == "imagenet"
        if imagenet:
            self.conv1 = _conv(in_channels, stem_width, 7, stride=2)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = _conv(in_channels, stem_width, 3)
            self.maxpool = nn.Identity()

        # N x 16 x 32 x 32 after the stem (CIFAR, small stem) ... N x 640 x 8 x 8 after the last
        # layer (WRN-28-10; N x 256 x 8 x 8 for ResNet-164)
        stages = [FeatureStage(("conv1",), stem_width, 2 if imagenet else 1)]
        stride = 4 if imagenet else 1  # layer1 reads the max-pooled stem
        channels = stem_width
        for i, (planes, depth) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for j in range(depth):
                block_stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block_cls(channels, planes, stride=block_stride, dropout=dropout))
                channels = planes * block_cls.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            stride *= 2 if i > 0 else 1
            modules = ("maxpool", "layer1") if i == 0 else (f"layer{i + 1}",)
            stages.append(FeatureStage(modules, channels, stride))
        self.num_stages = len(layers)
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = channels

        # the final activation after the last addition
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)
        self.set_stages(stages, tail=("bn", "act"))
        self.global_pool = global_pool_layer()
        self.fc = linear_classifier(channels, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # after the loop above, which drew every conv
            for m in self.modules():
                if isinstance(m, PreActBlock):
                    nn.init.zeros_(m.conv2.weight)
                elif isinstance(m, PreActBottleneck):
                    nn.init.zeros_(m.conv3.weight)

    @property
    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]


def wide_resnet(
    *,
    depth: int = 28,
    widen_factor: int = 10,
    dropout: float = 0.0,
    in_channels: int = 3,
    num_classes: int = 1000,
    stem: str = "small",
    zero_init_residual: bool = True,
) -> PreActResNet:
    """WRN-``depth``-``widen_factor``: three stages of (depth - 4) / 6 basic units of 16k, 32k
    and 64k channels after a 16-channel stem (Zagoruyko & Komodakis 2016, Table 1).
    ``zero_init_residual``: see ``PreActResNet``."""
    if depth < 10 or (depth - 4) % 6 != 0:
        raise ValueError(
            f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}"
        )
    if widen_factor < 1:
        raise ValueError(f"widen_factor must be a positive integer, got {widen_factor}")
    n = (depth - 4) // 6
    return PreActResNet(
        block="basic",
        layers=(n, n, n),
        widths=(16 * widen_factor, 32 * widen_factor, 64 * widen_factor),
        in_channels=in_channels,
        num_classes=num_classes,
        stem=stem,
        stem_width=16,
        dropout=dropout,
        zero_init_residual=zero_init_residual,
    )


PAPER = "He et al. 2016b, Identity Mappings in Deep Residual Networks, arXiv:1603.05027"

# CIFAR bottleneck nets of §4: depth 9n + 2 -> n units per stage, 16/32/64 planes (x4 out).
CIFAR_PREACT_RESNETS: dict[str, int] = {"preact_resnet164": 18, "preact_resnet1001": 111}

# kuangliu omits the final BN-ReLU; kept here as the paper has it (+1,024 parameters).
register(
    "preact_resnet18",
    PreActResNet,
    paper=f"{PAPER} (the common CIFAR ResNet-18 variant, as kuangliu/pytorch-cifar)",
    block="basic",
    layers=(2, 2, 2, 2),
    widths=(64, 128, 256, 512),
    stem_width=64,
)
for _name, _n in CIFAR_PREACT_RESNETS.items():
    register(
        _name,
        PreActResNet,
        paper=PAPER,
        block="bottleneck",
        layers=(_n, _n, _n),
        widths=(16, 32, 64),
    )
# Dropout 0.3: the paper's CIFAR setting (its WRN-28-10 with dropout); wide_resnet defaults to 0.
register(
    "wrn28_10",
    wide_resnet,
    paper="Zagoruyko & Komodakis 2016, Wide Residual Networks, arXiv:1605.07146",
    depth=28,
    widen_factor=10,
    dropout=0.3,
)
