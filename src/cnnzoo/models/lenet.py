"""LeNet-5 (LeCun et al. 1998) and the multilayer-perceptron baseline it was compared with.

LeCun, Bottou, Bengio, Haffner, *Gradient-Based Learning Applied to Document Recognition*,
Proc. IEEE 86(11), 1998. The paper's Fig. 9 puts LeNet-5 at 0.95% MNIST test error and the
784-300-100-10 perceptron at 3.05%; here both are rebuilt with the modern choices the paper
predates (ReLU, max-pooling, a softmax classifier in place of the RBF output layer).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from cnnzoo.errors import check_choice
from cnnzoo.models.features import FeatureStage, HeadSpec, ZooNet, linear_classifier
from cnnzoo.models.registry import register

__all__ = ["ACTIVATIONS", "LeNet5", "MLP"]

PAPER = (
    "LeCun et al. 1998, Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 86(11)"
)

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class LeNet5(ZooNet):
    """LeNet-5: C1 conv 5x5 (6) - S2 pool - C3 conv 5x5 (16) - S4 pool - C5 (120) - F6 (84) - out.

    Departures from the paper, all the usual modern ones (as in d2l.ai's LeNet): ReLU and 2x2
    max-pooling instead of the scaled tanh and trainable average subsampling (``activation``
    restores tanh or sigmoid); C3 connects to all six S2 maps, not the paper's 10-of-15 table
    (61.7k parameters instead of 60k); C5 is a linear layer (the paper's 5x5 conv on a 5x5 map
    is the same thing) and the output is a linear layer, not Euclidean RBF units. C1 pads by 2,
    so a 28x28 MNIST digit gives the feature-map sizes of the paper's padded 32x32 input
    (28 -> 14 -> 10 -> 5); other sizes are pooled adaptively to 5x5 before C5.

    Feature stages: the paper's feature maps C1, S2, C3, S4 (strides 1, 2, 2, 4). The head
    pools to a fixed 5x5 grid for C5 (``global_pool`` cannot change; ``""`` removes the head);
    its pre-logits features are F6's 84.

    Init: PyTorch's default fan-in-scaled uniform, the counterpart of the paper's U(+-2.4/F_in).
    """

    head_spec = HeadSpec(
        classifier="classifier.output",
        pool="pool",
        pre_logits=(
            "flatten",
            "classifier.c5",
            "classifier.act5",
            "classifier.f6",
            "classifier.act6",
        ),
        pool_types=(),
    )

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
                act1=act(),
                s2=nn.MaxPool2d(kernel_size=2, stride=2),
                c3=nn.Conv2d(6, 16, kernel_size=5),
                act3=act(),
                s4=nn.MaxPool2d(kernel_size=2, stride=2),
            )
        )
        # N x 1 x 28 x 28 -> C1: N x 6 x 28 x 28 -> S2: N x 6 x 14 x 14 -> C3: N x 16 x 10 x 10
        # -> S4: N x 16 x 5 x 5
        self.set_stages(
            [
                FeatureStage(("features.c1", "features.act1"), 6, 1),
                FeatureStage(("features.s2",), 6, 2),
                FeatureStage(("features.c3", "features.act3"), 16, 2),
                FeatureStage(("features.s4",), 16, 4),
            ]
        )
        self.num_classes = num_classes
        self.num_features = 16
        self.head_hidden_size = 84
        self.pool = nn.AdaptiveAvgPool2d((5, 5))  # N x 16 x 5 x 5 (a no-op for 28x28 inputs)
        self.flatten = nn.Flatten(1)  # N x 400
        self.classifier = nn.Sequential(
            OrderedDict(
                c5=nn.Linear(16 * 5 * 5, 120),
                act5=act(),
                f6=nn.Linear(120, 84),
                act6=act(),
                output=linear_classifier(84, num_classes),
            )
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # the stages' container, run whole (see ZooNet)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.flatten(self.pool(x))  # N x 400
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)  # N x 84 | classes


class MLP(ZooNet):
    """Fully connected baseline: flatten -> hidden ReLU layers -> linear classifier.

    The default ``hidden_sizes=(300, 100)`` is the paper's "3-layer NN, 300+100 hidden units"
    (3.05% MNIST error in its Fig. 9), with ReLU for its sigmoid units. The input is pooled
    adaptively to ``image_size`` x ``image_size`` (a no-op at that size) so that any image size
    fits the first layer, as every zoo network must.

    It has no feature maps, so of timm's model API it has the classifier part only
    (``forward_features`` gives the last hidden layer's N x ``hidden_sizes[-1]``,
    ``reset_classifier(num_classes)``); ``feature_info`` is empty, and ``features_only``,
    ``forward_intermediates`` and ``global_pool`` are refused with a ``ValueError``.

    Init: PyTorch's default fan-in-scaled uniform.
    """

    head_spec = HeadSpec(classifier="fc", pool=None, pool_types=())

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        hidden_sizes: Sequence[int] = (300, 100),
    ) -> None:
        super().__init__()
        if image_size < 1 or not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(
                f"MLP needs image_size >= 1 and at least one hidden layer of width >= 1, "
                f"got image_size={image_size}, hidden_sizes={tuple(hidden_sizes)}"
            )
        widths = [in_channels * image_size * image_size, *hidden_sizes]
        self.pool = nn.AdaptiveAvgPool2d((image_size, image_size))
        self.flatten = nn.Flatten(1)  # N x (C * image_size * image_size)
        self.hidden = nn.Sequential(
            *(
                layer
                for n_in, n_out in zip(widths[:-1], widths[1:], strict=True)
                for layer in (nn.Linear(n_in, n_out), nn.ReLU(inplace=True))
            )
        )  # N x hidden_sizes[-1]
        self.set_stages([], tail=("pool", "flatten", "hidden"))
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = widths[-1]
        self.fc = linear_classifier(self.num_features, num_classes)


register("lenet", LeNet5, paper=PAPER, activation="relu")
register("mlp", MLP, paper=PAPER, hidden_sizes=(300, 100))
