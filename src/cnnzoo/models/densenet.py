"""DenseNet (Huang et al. 2017, Densely Connected Convolutional Networks, arXiv:1608.06993).

Each layer of a dense block sees the concatenation of all earlier feature maps of the block and
adds ``growth_rate`` new channels; transitions between blocks compress and halve the map. Module
names follow torchvision (``features.denseblock1.denselayer1.norm1``), so its state_dicts load
directly with ``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

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

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet"]


class DenseLayer(nn.Module):
    """DenseNet-B layer: BN-ReLU-1x1 conv (bottleneck to ``bn_size * growth_rate``), then
    BN-ReLU-3x3 conv to ``growth_rate`` new channels."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth_rate, kernel_size=3, padding=1, bias=False)
        # Dropout after the new features only, as torchvision (the paper also drops after conv1).
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.dropout(self.conv2(self.relu2(self.norm2(x))))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; the output concatenates the input and every layer's output,
    ``in_channels + num_layers * growth_rate`` channels."""

    def __init__(
        self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv to ``out_channels`` (compression), then 2x2 average pool, stride 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        # ceil_mode keeps the last row/column of an odd map (7 -> 4, not 3), so a 28 px input
        # survives DenseNet-121's three transitions after the ImageNet stem (7 -> 4 -> 2 -> 1
        # instead of 7 -> 3 -> 1 -> 0). On even maps, e.g. all of them at 224 px, it changes
        # nothing, so outputs still equal torchvision's.
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)


class DenseNet(ZooNet):
    """DenseNet-BC (bottleneck layers + compression) of Huang et al. 2017, arXiv:1608.06993.

    Stems: ``"imagenet"`` is the paper's 7x7 stride-2 conv + BN-ReLU + 3x3 stride-2 max-pool;
    ``"small"`` is the CIFAR net's single 3x3 stride-1 conv (its first dense layer starts with
    BN-ReLU). Init as torchvision: Kaiming-normal convs, BN weight 1 / bias 0, linear bias 0.

    Feature stages (timm's): the stem (before its max-pool), every dense block but the last
    (before its transition), and the last block with the final BN-ReLU — at strides 2, 4, 8,
    16, 32 for DenseNet-121 with the ImageNet stem.
    """

    head_spec = HeadSpec(classifier="classifier")

    def __init__(
        self,
        *,
        growth_rate: int,
        block_config: tuple[int, ...],
        num_init_features: int,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        check_choice("stem", stem, STEMS)
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression (theta) must be in (0, 1], got {compression}")
        if not block_config:
            raise ValueError("block_config needs at least one dense block, got ()")

        imagenet = stem == "imagenet"
        if imagenet:
            self.features = nn.Sequential(
                OrderedDict(
                    conv0=nn.Conv2d(in_channels, num_init_features, 7, 2, padding=3, bias=False),
                    norm0=nn.BatchNorm2d(num_init_features),
                    relu0=nn.ReLU(inplace=True),
                    pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
                )
            )
            stem_stage = FeatureStage(
                ("features.conv0", "features.norm0", "features.relu0"), num_init_features, 2
            )
            pending, stride = ["features.pool0"], 4  # the next stage starts with the max-pool
        else:
            conv0 = nn.Conv2d(in_channels, num_init_features, 3, padding=1, bias=False)
            self.features = nn.Sequential(OrderedDict(conv0=conv0))
            stem_stage = FeatureStage(("features.conv0",), num_init_features, 1)
            pending, stride = [], 1
        stages = [stem_stage]
        # DenseNet-121 at 224 px: N x 64 x 56 x 56 -> block1 256 x 56 x 56 -> trans1 128 x 28 x 28
        # -> block2 512 -> trans2 256 x 14 x 14 -> block3 1024 -> trans3 512 x 7 x 7 -> block4 1024.
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate)
            self.features.add_module(f"denseblock{i}", block)
            pending.append(f"features.denseblock{i}")
            channels += num_layers * growth_rate
            if i < len(block_config):
                stages.append(FeatureStage(tuple(pending), channels, stride))
                out_channels = int(compression * channels)
                self.features.add_module(f"transition{i}", Transition(channels, out_channels))
                pending, stride = [f"features.transition{i}"], stride * 2
                channels = out_channels
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.features.add_module("relu5", nn.ReLU(inplace=True))
        stages.append(
            FeatureStage((*pending, "features.norm5", "features.relu5"), channels, stride)
        )
        self.set_stages(stages)
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = channels
        self.global_pool = global_pool_layer()
        self.classifier = linear_classifier(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # the stages' container, run whole (see ZooNet)


_PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks, arXiv:1608.06993"

# Rows: the paper's Table 1 (ImageNet, k = 32). DenseNet-BC-100 (CIFAR, Table 2): depth L = 100
# gives (L - 4) / 6 = 16 bottleneck layers per block; the first conv has 2k = 24 channels.
DENSENETS: dict[str, dict[str, Any]] = {
    "densenet121": dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
    "densenet169": dict(growth_rate=32, block_config=(6, 12, 32, 32), num_init_features=64),
    "densenet201": dict(growth_rate=32, block_config=(6, 12, 48, 32), num_init_features=64),
    "densenet_bc100": dict(
        growth_rate=12, block_config=(16, 16, 16), num_init_features=24, stem="small"
    ),
}

for _name, _row in DENSENETS.items():
    _twin = same_layout if _name != "densenet_bc100" else None  # torchvision has the others
    register(_name, DenseNet, paper=_PAPER, torchvision=_twin, **_row)
