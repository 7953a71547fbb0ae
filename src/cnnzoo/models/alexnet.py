"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, ImageNet Classification with Deep CNNs).

This is the single-tower network torchvision ships, from Krizhevsky's "One weird trick for
parallelizing convolutional neural networks" (arXiv:1404.5997): 64-192-384-256-256 conv
channels on one GPU, not the paper's two-GPU towers of 96-256-384-384-256 channels (48/128/...
per GPU, with cross-tower connections only at conv3 and the FC layers). Local response
normalisation is gone too, as in torchvision. Layer indices in ``features`` and ``classifier``
equal torchvision's, so its state_dict loads directly.
"""

from __future__ import annotations

from itertools import pairwise

from torch import Tensor, nn

from cnnzoo.errors import check_choice
from cnnzoo.models.common import STEMS
from cnnzoo.models.features import FeatureStage, HeadSpec, ZooNet, linear_classifier
from cnnzoo.models.registry import register, same_layout

__all__ = ["AlexNet"]


class AlexNet(ZooNet):
    """Five conv layers (ReLU, three 3x3/2 max-pools) and three FC layers with dropout.

    ``stem="imagenet"``: conv1 is 11x11 stride 4 followed by a max-pool (224 -> 55 -> 27), the
    trunk ends at 6x6 and the classifier takes 256 * 6 * 6 features, as torchvision (61.1M
    parameters). ``stem="small"`` (28/32 px): conv1 is 3x3 stride 1 and the max-pool after it
    is dropped, so only the two later pools downsample (32 -> 15 -> 7, 28 -> 13 -> 6); the
    adaptive pool then gives 3x3 instead of 6x6, which keeps the first FC layer at 2304 x 4096
    (28.7M parameters at 10 classes instead of 58M from a 9216-wide input).

    The ImageNet stem downsamples 32x overall, so it needs inputs of at least 63 px
    (torchvision's ``min_size``); use the small stem below that.

    Init: PyTorch's defaults (fan-in-scaled uniform), as torchvision, not the paper's N(0, 0.01)
    weights with unit biases in conv2, conv4, conv5 and the hidden FC layers (its Sec. 5).

    Feature stages, as timm's VGG (before each max-pool), then the last max-pool: conv1, conv2,
    conv5, pool5 at strides 4, 8, 16, 32 (small stem: 1, 1, 2, 4). The pre-logits features are
    the second FC layer's 4096; the head pools to a fixed grid, so ``global_pool`` cannot change
    (only ``""`` removes the whole head).
    """

    # the layers' indices are torchvision's
    head_spec = HeadSpec(
        classifier="classifier.6",
        pool="avgpool",
        pre_logits=("flatten", *(f"classifier.{i}" for i in range(6))),
        pool_types=(),
    )

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        stem: str = "imagenet",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_choice("stem", stem, STEMS)
        imagenet = stem == "imagenet"
        if imagenet:
            conv1 = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
            pool1: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2)
            pooled = 6
        else:
            conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
            pool1 = nn.Identity()
            pooled = 3
        self.features = nn.Sequential(
            conv1,
            nn.ReLU(inplace=True),
            pool1,
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        # imagenet: N x 3 x 224 x 224 -> N x 256 x 6 x 6; small: N x 3 x 32 x 32 -> N x 256 x 7 x 7
        # stages: conv1 | pool1, conv2 | pool2, conv3 .. conv5 (each with its ReLU) | pool5
        layers = pairwise((0, 2, 5, 12, 13))  # indices into features
        strides = (4, 8, 16, 32) if imagenet else (1, 1, 2, 4)  # the small stem has no pool1
        self.set_stages(
            [
                FeatureStage(tuple(f"features.{i}" for i in range(*span)), width, stride)
                for span, width, stride in zip(layers, (64, 192, 256, 256), strides, strict=True)
            ]
        )
        self.num_classes = num_classes
        self.num_features = 256
        self.head_hidden_size = 4096
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))  # N x 256 x 6 x 6 (small: 3 x 3)
        self.flatten = nn.Flatten(1)  # N x 9216 (small: N x 2304)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * pooled * pooled, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            linear_classifier(4096, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # the stages' container, run whole (see ZooNet)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.flatten(self.avgpool(x))  # N x 9216 (small: N x 2304)
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)  # N x 4096 | classes


register(
    "alexnet",
    AlexNet,
    paper="Krizhevsky et al. 2012, ImageNet Classification with Deep CNNs, NeurIPS; "
    "one-tower form of Krizhevsky 2014, One weird trick, arXiv:1404.5997",
    torchvision=same_layout,
)
