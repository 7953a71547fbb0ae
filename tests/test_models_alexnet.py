"""AlexNet: torchvision's one-tower network, exactly; a small stem for 28/32 px images."""

import pytest
import torch
import torchvision

from cnnzoo.models import create_model
from cnnzoo.models.alexnet import AlexNet
from cnnzoo.models.stats import count_parameters as n_params


def test_alexnet_equals_torchvision_at_imagenet_settings() -> None:
    torch.manual_seed(0)
    ours, reference = create_model("alexnet"), torchvision.models.alexnet(weights=None)
    assert n_params(ours) == n_params(reference) == 61_100_840
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_alexnet_small_stem_keeps_a_feature_map(shape: tuple[int, int, int]) -> None:
    """3x3 stride-1 conv1, no first max-pool: 32 -> 15 -> 7 and 28 -> 13 -> 6."""
    net = AlexNet(in_channels=shape[0], num_classes=10, stem="small")
    side = {28: 6, 32: 7}[shape[1]]
    assert net.forward_features(torch.randn(2, *shape)).shape == (2, 256, side, side)
    assert net(torch.randn(2, *shape)).shape == (2, 10)


def test_alexnet_small_stem_pools_to_3x3_for_a_smaller_classifier() -> None:
    net = AlexNet(num_classes=10, stem="small")
    assert net.classifier[1].in_features == 256 * 3 * 3
    assert n_params(net) == 28_711_754


def test_alexnet_rejects_an_unknown_stem() -> None:
    with pytest.raises(ValueError, match="stem='cifar' is not one of: imagenet, small"):
        AlexNet(stem="cifar")
