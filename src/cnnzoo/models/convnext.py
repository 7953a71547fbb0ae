"""ConvNeXt (Liu et al. 2022, A ConvNet for the 2020s, arXiv:2201.03545).

Follows the reference implementation (facebookresearch/ConvNeXt, models/convnext.py): the same
module names, so its checkpoints load directly; torchvision's load through
:func:`from_torchvision_state_dict`.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

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

__all__ = ["LayerNorm2d", "Block", "Downsample", "ConvNeXt", "from_torchvision_state_dict"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an N x C x H x W map (the reference's channels_first LN)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)  # N x H x W x C
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # N x C x H x W


class Block(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv -> LN -> 1x1 conv to 4x width -> GELU -> 1x1 conv back
    -> layer scale ``gamma`` -> stochastic depth, added to the input. The 1x1 convs are Linear
    layers on a channels-last tensor, as in the reference."""

    def __init__(self, dim: int, drop_path: float, layer_scale_init_value: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init_value))
        self.drop_path = StochasticDepth(drop_path, mode="row")

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # N x H x W x C
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + self.drop_path(y.permute(0, 3, 1, 2))  # N x C x H x W


class Downsample(nn.Sequential):
    """LN then a 2x2 stride-2 conv: the paper's separate downsampling layer (Sec. 2.6)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(LayerNorm2d(in_dim), nn.Conv2d(in_dim, out_dim, kernel_size=2, stride=2))

    def forward(self, x: Tensor) -> Tensor:
        norm, conv = self
        x = norm(x)
        # Zero-pad an odd side at the bottom/right (ceil mode, 7 -> 4 rather than 3) so a 28 px
        # input survives the ImageNet stem and three downsamplings (7 -> 4 -> 2 -> 1 instead of
        # 7 -> 3 -> 1 -> error). Even maps, all of them at 224 px, are untouched.
        return conv(F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2)))


class ConvNeXt(ZooNet):
    """ConvNeXt of Liu et al. 2022, arXiv:2201.03545.

    Stems: ``"imagenet"`` is the paper's 4x4 stride-4 patchify conv + LN. ``"small"`` is a 3x3
    stride-1 conv + LN: the stage resolutions become 32-16-8-4 for 32 px inputs (28-14-7-4 for
    28 px), those of the CIFAR ResNets and the zoo's other small stems, rather than a 2 px map
    in the last stage, at 16x the stage cost of the 4x4 patchify.
    Init as the paper: truncated normal (std 0.02) conv/linear weights, zero biases, the head's
    weight and bias then multiplied by ``head_init_scale``.

    Feature stages (timm's): the four stages, each with the downsampling in front of it (strides
    4, 8, 16, 32 with the ImageNet stem; 1, 2, 4, 8 with the small one). The head's LayerNorm
    reads the pooled features: pooling that doubles them (``catavgmax``) does not fit it.
    """

    head_spec = HeadSpec(
        classifier="head", pre_logits=("norm",), pool_types=("avg", "max", "avgmax")
    )

    def __init__(
        self,
        *,
        depths: tuple[int, ...],
        dims: tuple[int, ...],
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        head_init_scale: float = 1.0,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        check_choice("stem", stem, STEMS)
        if len(depths) != len(dims) or not depths:
            raise ValueError(f"depths and dims need one entry per stage, got {depths} and {dims}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")

        kernel, stride, padding = (4, 4, 0) if stem == "imagenet" else (3, 1, 1)
        stem_conv = nn.Conv2d(in_channels, dims[0], kernel, stride=stride, padding=padding)
        self.downsample_layers = nn.ModuleList([nn.Sequential(stem_conv, LayerNorm2d(dims[0]))])
        self.downsample_layers.extend(
            Downsample(a, b) for a, b in zip(dims[:-1], dims[1:], strict=False)
        )
        # Stochastic depth rate of each block, rising linearly from 0 (computed on the CPU so the
        # net also builds under `with torch.device("meta")`).
        dp_rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        start = 0
        for depth, dim in zip(depths, dims, strict=True):
            rates = dp_rates[start : start + depth]
            self.stages.append(
                nn.Sequential(*(Block(dim, r, layer_scale_init_value) for r in rates))
            )
            start += depth
        # ConvNeXt-T at 224 px: N x 96 x 56 x 56 -> 192 x 28 x 28 -> 384 x 14 x 14 -> 768 x 7 x 7
        self.set_stages(
            [
                FeatureStage((f"downsample_layers.{i}", f"stages.{i}"), dim, stride * 2**i)
                for i, dim in enumerate(dims)
            ]
        )
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = dims[-1]
        self.global_pool = global_pool_layer()
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)  # on the pooled features
        self.head = linear_classifier(dims[-1], num_classes)
        self._init_weights(head_init_scale)

    def _init_weights(self, head_init_scale: float) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:  # every ConvNeXt conv and linear layer has one
                    nn.init.zeros_(m.bias)
        if isinstance(self.head, nn.Linear):  # no classifier with num_classes=0
            with torch.no_grad():
                self.head.weight.mul_(head_init_scale)
                self.head.bias.mul_(head_init_scale)


def from_torchvision_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a ``torchvision.models.convnext_*`` state_dict to this module's (reference) names.

    torchvision interleaves stem/downsampling and stages in ``features.0..7`` (even: stem and
    downsample layers, odd: stages), numbers the layers of a block (``block.0`` dwconv,
    ``block.2`` norm, ``block.3`` pwconv1, ``block.5`` pwconv2), stores gamma as ``layer_scale``
    of shape C x 1 x 1, and puts the final LN and linear in ``classifier.0`` / ``classifier.2``.
    """
    block_layers = {"0": "dwconv", "2": "norm", "3": "pwconv1", "5": "pwconv2"}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if m := re.fullmatch(r"features\.(\d+)\.(.+)", key):
            index, rest = int(m[1]), m[2]
            if index % 2 == 0:
                key = f"downsample_layers.{index // 2}.{rest}"
            else:
                rest = re.sub(r"block\.(\d)\.", lambda b: block_layers[b[1]] + ".", rest)
                if rest.endswith("layer_scale"):
                    rest, value = rest.replace("layer_scale", "gamma"), value.reshape(-1)
                key = f"stages.{index // 2}.{rest}"
        else:
            key = key.replace("classifier.0.", "norm.").replace("classifier.2.", "head.")
        out[key] = value
    return out


_PAPER = "Liu et al. 2022, A ConvNet for the 2020s, arXiv:2201.03545"

# Rows: blocks per stage (B) and channels per stage (C) of the paper's Sec. 3, with the stochastic
# depth rates of its ImageNet-1K training recipe (appendix A.1; torchvision's defaults too).
CONVNEXTS: dict[str, dict[str, Any]] = {
    "convnext_tiny": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), drop_path_rate=0.1),
    "convnext_small": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), drop_path_rate=0.4),
    "convnext_base": dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), drop_path_rate=0.5),
}

for _name, _row in CONVNEXTS.items():
    register(_name, ConvNeXt, paper=_PAPER, torchvision=from_torchvision_state_dict, **_row)
