"""LeNet-5 and its MLP baseline: the paper's feature-map sizes, any input size, argument checks."""

import pytest
import torch

from cnnzoo.models import create_model
from cnnzoo.models.lenet import MLP, LeNet5
from cnnzoo.models.stats import count_parameters as n_params


def test_lenet_feature_maps_on_mnist_follow_the_paper() -> None:
    """28x28 with C1 padded by 2 gives the paper's 32x32-input sizes: 28 -> 14 -> 10 -> 5."""
    net = LeNet5(in_channels=1, num_classes=10)
    x = torch.randn(2, 1, 28, 28)
    sizes = []
    for name, layer in net.features.named_children():
        x = layer(x)
        if name in ("c1", "s2", "c3", "s4"):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5)]
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_lenet_parameter_count() -> None:
    # fully connected C3 (the paper's sparse table gives 60k): the d2l.ai LeNet count
    assert n_params(LeNet5(in_channels=1, num_classes=10)) == 61_706


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_lenet_pools_any_input_to_5x5(shape: tuple[int, int, int]) -> None:
    net = LeNet5(in_channels=shape[0], num_classes=7)
    assert net.forward_features(torch.randn(2, *shape)).shape[1] == net.num_features
    assert net(torch.randn(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_lenet_activation_is_a_choice(activation: str) -> None:
    net = LeNet5(activation=activation)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_mlp_is_the_papers_784_300_100_baseline() -> None:
    net = create_model("mlp", in_channels=1, num_classes=10)
    widths = [layer.out_features for layer in net.modules() if isinstance(layer, torch.nn.Linear)]
    assert widths == [300, 100, 10]
    assert n_params(net) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_mlp_sized_for_its_image_or_pooled_to_it(shape: tuple[int, int, int]) -> None:
    exact = MLP(in_channels=shape[0], num_classes=10, image_size=shape[1])
    pooled = MLP(in_channels=shape[0], num_classes=10, image_size=16)
    for net in (exact, pooled):
        assert net(torch.randn(2, *shape)).shape == (2, 10)
    with pytest.raises(ValueError, match="hidden"):
        MLP(hidden_sizes=())
