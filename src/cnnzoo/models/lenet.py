"""LeNet-5 (LeCun et al. 1998) and the multilayer-perceptron baseline it was compared with.

LeCun, Bottou, Bengio, Haffner, *Gradient-Based Learning Applied to Document Recognition*,
Proc. IEEE 86(11), 1998. The paper's Fig. 9 puts LeNet-5 at 0.95% MNIST test error and the
784-300-100-10 perceptron at 3.05%; here both are rebuilt with the modern choices the paper
predates (ReLU, max-pooling, a softmax classifier in place of the RBF output layer).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cnnzoo.errors import check_choice
from cnnzoo.models.registry import register

__all__ = ["ACTIVATIONS", "LeNet5", "MLP"]

PAPER = (
    "LeCun et al. 1998, Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 86(11)"
)

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class LeNet5(nn.Module):
    """LeNet-5: C1 conv 5x5 (6) - S2 pool - C3 conv 5x5 (16) - S4 pool - C5 (120) - F6 (84) - out.

    Departures from the paper, all the usual modern ones (as in d2l.ai's LeNet): ReLU and 2x2
    max-pooling instead of the scaled tanh and trainable average subsampling (``activation``
    restores tanh or sigmoid); C3 connects to all six S2 maps, not the paper's 10-of-15 table
    (61.7k parameters instead of 60k); C5 is a linear layer (the paper's 5x5 conv on a 5x5 map
    is the same thing) and the output is a linear layer, not Euclidean RBF units. C1 pads by 2,
    so a 28x28 MNIST digit gives the feature-map sizes of the paper's padded 32x32 input
    (28 -> 14 -> 10 -> 5); other sizes are pooled adaptively to 5x5 before C5.

    Init: PyTorch's default fan-in-scaled uniform, the counterpart of the paper's U(+-2.4/F_in).
    """

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
        self.num_features = 16
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
        self.pool = nn.AdaptiveAvgPool2d((5, 5))
        self.classifier = nn.Sequential(
            OrderedDict(
                c5=nn.Linear(16 * 5 * 5, 120),
                act5=act(),
                f6=nn.Linear(120, 84),
                act6=act(),
                output=nn.Linear(84, num_classes),
            )
        )

    def forward_features(self, x: Tensor) -> Tensor:
        # N x 1 x 28 x 28 -> c1: N x 6 x 28 x 28 -> s2: N x 6 x 14 x 14 -> c3: N x 16 x 10 x 10
        return self.features(x)  # N x 16 x 5 x 5

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]  # "output"

    def forward_head(self, x: Tensor) -> Tensor:
        x = self.pool(x)  # N x 16 x 5 x 5 (a no-op for 28x28 inputs)
        x = torch.flatten(x, 1)  # N x 400
        return self.classifier(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class MLP(nn.Module):
    """Fully connected baseline: flatten -> hidden ReLU layers -> linear classifier.

    The default ``hidden_sizes=(300, 100)`` is the paper's "3-layer NN, 300+100 hidden units"
    (3.05% MNIST error in its Fig. 9), with ReLU for its sigmoid units. The input is pooled
    adaptively to ``image_size`` x ``image_size`` (a no-op at that size) so that any image size
    fits the first layer, as every zoo network must.

    Init: PyTorch's default fan-in-scaled uniform.
    """

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
        self.num_features = widths[-1]
        self.pool = nn.AdaptiveAvgPool2d((image_size, image_size))
        self.hidden = nn.Sequential(
            *(
                layer
                for n_in, n_out in zip(widths[:-1], widths[1:], strict=True)
                for layer in (nn.Linear(n_in, n_out), nn.ReLU(inplace=True))
            )
        )
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.pool(x), 1)  # N x (C * image_size * image_size)
        return self.hidden(x)  # N x hidden_sizes[-1]

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


register("lenet", LeNet5, paper=PAPER, activation="relu")
register("mlp", MLP, paper=PAPER, hidden_sizes=(300, 100))
