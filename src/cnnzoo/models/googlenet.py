"""GoogLeNet / Inception v1 (Szegedy et al. 2015, Going Deeper with Convolutions, arXiv:1409.4842).

Built as torchvision builds it, so torchvision's state_dict loads directly: every conv is
conv-BN-ReLU (batch normalisation comes from Inception v2, Ioffe & Szegedy 2015, and is not in
this paper), and the "5x5" branch uses a 3x3 conv (see ``Inception``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.googlenet import GoogLeNetOutputs

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

__all__ = ["INCEPTION_V1", "BasicConv2d", "GoogLeNet", "Inception", "InceptionAux", "InceptionSpec"]


@dataclass(frozen=True)
class InceptionSpec:
    """One row of the paper's Table 1: the width of each branch of an Inception module."""

    ch1x1: int  # "#1x1"
    ch3x3red: int  # "#3x3 reduce"
    ch3x3: int  # "#3x3"
    ch5x5red: int  # "#5x5 reduce"
    ch5x5: int  # "#5x5"
    pool_proj: int  # "pool proj"

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


# the normalisation torchvision's ImageNet weights were trained with (see transform_input)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Table 1 of the paper, modules 3a..5b in order; input widths follow from the outputs.
INCEPTION_V1: dict[str, InceptionSpec] = {
    "3a": InceptionSpec(64, 96, 128, 16, 32, 32),
    "3b": InceptionSpec(128, 128, 192, 32, 96, 64),
    "4a": InceptionSpec(192, 96, 208, 16, 48, 64),
    "4b": InceptionSpec(160, 112, 224, 24, 64, 64),
    "4c": InceptionSpec(128, 128, 256, 24, 64, 64),
    "4d": InceptionSpec(112, 144, 288, 32, 64, 64),
    "4e": InceptionSpec(256, 160, 320, 32, 128, 128),
    "5a": InceptionSpec(256, 160, 320, 32, 128, 128),
    "5b": InceptionSpec(384, 192, 384, 48, 128, 128),
}


class BasicConv2d(nn.Module):
    """Conv (no bias) - BatchNorm (eps 1e-3) - ReLU, as torchvision."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1-3x3 | 1x1-"5x5" | pool-1x1."""

    def __init__(self, in_channels: int, spec: InceptionSpec) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, spec.ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, spec.ch3x3red, kernel_size=1),
            BasicConv2d(spec.ch3x3red, spec.ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, spec.ch5x5red, kernel_size=1),
            # The paper's 5x5 conv is a 3x3 here: a known torchvision bug kept so that its
            # pretrained weights still load (https://github.com/pytorch/vision/issues/906).
            BasicConv2d(spec.ch5x5red, spec.ch5x5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, spec.pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on 4a / 4d: avg-pool to 4x4, 1x1 conv (128), FC 1024, dropout, FC.

    The paper pools 5x5 with stride 3 (14x14 -> 4x4); the adaptive pool gives the same 4x4 at
    224 px and works at any size.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(x, (4, 4))  # N x 512 x 4 x 4 (aux2: N x 528 x 4 x 4)
        x = torch.flatten(self.conv(x), 1)  # N x 2048
        x = self.dropout(F.relu(self.fc1(x), inplace=True))  # N x 1024
        return self.fc2(x)


class GoogLeNet(ZooNet):
    """Stem, Inception 3a-3b, pool, 4a-4e, pool, 5a-5b, global average pool, dropout, FC.

    ``stem="imagenet"``: 7x7/2 conv (64), max-pool, 1x1 conv (64), 3x3 conv (192), max-pool
    (224 -> 28 at 3a). ``stem="small"`` (28/32 px, as kuangliu/pytorch-cifar): one 3x3 stride-1
    conv to 192 channels and no early max-pool, so 3a sees the full image (32 -> 16 -> 8).
    ``aux_logits`` adds the two auxiliary classifiers (on 4a and 4d): in training ``forward``
    then returns torchvision's ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``, whose
    auxiliary losses the training module adds with weight ``aux_loss_weight`` (the paper's 0.3);
    in eval mode it returns the logits only. Dropout before the FC is torchvision's 0.2 (the
    paper's Table 1: 40%).

    Feature stages, as timm's Inception-v3 (each before a max-pool): conv1, conv3, 3b, 4e, 5b at
    strides 2, 4, 8, 16, 32; the small stem is one conv, so it has four: conv1, 3b, 4e, 5b at
    strides 1, 1, 2, 4.

    ``transform_input`` re-scales an input normalised with ImageNet's mean and std to the
    ``(pixel - 0.5) / 0.5`` range that torchvision's pretrained weights expect (they were ported
    from TensorFlow's Inception): torchvision's ``googlenet(weights=...)`` turns it on, and so does
    ``create_model("googlenet", weights=...)`` for those weights.

    Init: truncated normal (std 0.01) for conv and linear weights, as torchvision.
    """

    head_spec = HeadSpec(classifier="fc", pre_logits=("dropout",))

    # __init__ registers these by name, one per row of INCEPTION_V1. Declared for the type
    # checker only: TorchScript would read class annotations as attribute types.
    if TYPE_CHECKING:
        inception3a: Inception
        inception3b: Inception
        inception4a: Inception
        inception4b: Inception
        inception4c: Inception
        inception4d: Inception
        inception4e: Inception
        inception5a: Inception
        inception5b: Inception

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: str = "imagenet",
        aux_logits: bool = True,
        dropout: float = 0.2,
        transform_input: bool = False,
    ) -> None:
        super().__init__()
        check_choice("stem", stem, STEMS)
        if transform_input and in_channels != 3:
            raise ValueError(
                f"transform_input re-normalises the three ImageNet (RGB) channels; "
                f"this GoogLeNet reads in_channels={in_channels}"
            )
        self.transform_input = transform_input
        # Flat attribute names (conv1 .. maxpool2, inception3a ..) are torchvision's; the small
        # stem leaves the layers it does not need as Identity so forward has no branches.
        imagenet = stem == "imagenet"
        if imagenet:
            self.conv1: nn.Module = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.conv2: nn.Module = BasicConv2d(64, 64, kernel_size=1)
            self.conv3: nn.Module = BasicConv2d(64, 192, kernel_size=3, padding=1)
            self.maxpool2: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        else:
            self.conv1 = BasicConv2d(in_channels, 192, kernel_size=3, padding=1)
            self.maxpool1, self.conv2 = nn.Identity(), nn.Identity()
            self.conv3, self.maxpool2 = nn.Identity(), nn.Identity()

        width = 192
        for name, spec in INCEPTION_V1.items():
            self.add_module(f"inception{name}", Inception(width, spec))
            width = spec.out_channels
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        # Feature stages, each ending before a max-pool (timm's Inception-v3 taps): conv1
        # N x 64 x 112 x 112 | conv3 N x 192 x 56 x 56 | 3b N x 480 x 28 x 28 | 4e N x 832 x 14 x 14
        # | 5b N x 1024 x 7 x 7 (small stem, 32 px: conv1 and 3b 32 x 32, 4e 16 x 16, 5b 8 x 8)
        stem_layers = ("_transform_input", "conv1")
        inception3 = ("maxpool2", "inception3a", "inception3b")
        inception4 = ("maxpool3", *(f"inception4{m}" for m in "abcde"))
        inception5 = ("maxpool4", "inception5a", "inception5b")
        if imagenet:
            stages = [
                FeatureStage(stem_layers, 64, 2),
                FeatureStage(("maxpool1", "conv2", "conv3"), 192, 4),
                FeatureStage(inception3, 480, 8),
                FeatureStage(inception4, 832, 16),
                FeatureStage(inception5, 1024, 32),
            ]
        else:  # the small stem's Identity layers join the next stage
            stages = [
                FeatureStage(stem_layers, 192, 1),
                FeatureStage(("maxpool1", "conv2", "conv3", *inception3), 480, 1),
                FeatureStage(inception4, 832, 2),
                FeatureStage(inception5, 1024, 4),
            ]
        self.set_stages(stages)

        # no classes (a feature extractor): no auxiliary classifiers either
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits and num_classes > 0:
            self.aux1 = InceptionAux(INCEPTION_V1["4a"].out_channels, num_classes)
            self.aux2 = InceptionAux(INCEPTION_V1["4d"].out_channels, num_classes)

        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = width
        self.global_pool = global_pool_layer()
        self.dropout = nn.Dropout(p=dropout)
        self.fc = linear_classifier(width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                # torchvision's call; its bounds are absolute (+-200 std), so nothing is cut
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _transform_input(self, x: Tensor) -> Tensor:
        if not self.transform_input:
            return x
        # x = (p - mean) / std per channel, so (p - 0.5) / 0.5 = x * std / 0.5 + (mean - 0.5) / 0.5
        # (torchvision's arithmetic, term for term, so that the outputs are bitwise the same)
        return torch.cat(
            [
                x[:, c : c + 1] * (std / 0.5) + (mean - 0.5) / 0.5
                for c, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
            ],
            1,
        )

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        """The logits; in training, with the auxiliary classifiers, ``GoogLeNetOutputs(logits,
        aux_logits2, aux_logits1)`` as torchvision's (the other nets return the logits only)."""
        if not self.training or self.aux1 is None or self.aux2 is None:
            return super().forward(x)
        x, taps = self._features(x, keep=("inception4a", "inception4d"))
        aux1 = self.aux1(taps["inception4a"])  # from N x 512 x 14 x 14
        aux2 = self.aux2(taps["inception4d"])  # from N x 528 x 14 x 14
        return GoogLeNetOutputs(self.forward_head(x), aux2, aux1)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """The classifier and the auxiliary ones, for ``num_classes`` (0: no auxiliary ones)."""
        super().reset_classifier(num_classes, global_pool)
        for name in ("aux1", "aux2"):
            if getattr(self, name) is None:
                continue
            if num_classes:
                self._replace(f"{name}.fc2", linear_classifier(1024, num_classes))
            else:
                setattr(self, name, None)


register(
    "googlenet",
    GoogLeNet,
    paper="Szegedy et al. 2015, Going Deeper with Convolutions, arXiv:1409.4842",
    torchvision=same_layout,
    aux_logits=True,
)
