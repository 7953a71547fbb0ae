"""DenseNet (Huang et al. 2017): torchvision equivalence, the paper's CIFAR count, behaviour."""

import pytest
import torch
import torchvision

from cnnzoo.models.densenet import DenseBlock, DenseNet, Transition
from cnnzoo.models.registry import create_model
from cnnzoo.models.stats import count_parameters as n_params

TORCHVISION_NAMES = ["densenet121", "densenet169", "densenet201"]


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_param_count_and_state_dict_keys_equal_torchvision(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours, theirs = create_model(name), getattr(torchvision.models, name)(weights=None)
    assert n_params(ours) == n_params(theirs)
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize(
    "name",
    [
        "densenet121",
        pytest.param("densenet169", marks=pytest.mark.slow),
        pytest.param("densenet201", marks=pytest.mark.slow),
    ],
)
def test_loads_torchvision_state_dict_and_reproduces_its_outputs_at_224(name: str) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    ours = create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_densenet_bc100_has_the_papers_parameter_count() -> None:
    # Table 2 gives 0.8M, one decimal. 10 classes: 769,162 -> rounds to 0.8M (3.9% under, so a
    # 2% band around 0.8M would fail); 100 classes (the C100 head): 799,942, within 0.01%.
    assert round(n_params(create_model("densenet_bc100", num_classes=10)) / 1e6, 1) == 0.8
    assert n_params(create_model("densenet_bc100", num_classes=100)) == pytest.approx(
        0.8e6, rel=0.02
    )


def test_densenet_bc100_is_the_papers_cifar_layout() -> None:
    net = create_model("densenet_bc100", num_classes=10)
    assert net.features.conv0.kernel_size == (3, 3) and net.features.conv0.out_channels == 24
    blocks = [m for m in net.features if isinstance(m, DenseBlock)]
    assert [len(b) for b in blocks] == [16, 16, 16]  # (100 - 4) / 6 layers per block
    assert sum(isinstance(m, Transition) for m in net.features) == 2
    # 24 + 16*12 = 216 -> 108 -> 300 -> 150 -> 342 channels before the classifier
    assert net.num_features == 342
    assert net.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 342, 8, 8)


def test_dense_layers_grow_by_k_through_a_4k_bottleneck_and_transitions_compress() -> None:
    block = DenseBlock(num_layers=3, in_channels=16, growth_rate=12, bn_size=4, drop_rate=0.0)
    assert [layer.conv1.out_channels for layer in block.values()] == [48, 48, 48]
    assert [layer.conv1.in_channels for layer in block.values()] == [16, 28, 40]
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 16 + 3 * 12, 8, 8)
    net = DenseNet(growth_rate=12, block_config=(2, 2), num_init_features=16, compression=0.5)
    assert net.features.transition1.conv.out_channels == (16 + 2 * 12) // 2


@pytest.mark.parametrize(
    ("name", "stem", "shape"),
    [
        ("densenet_bc100", "small", (3, 32, 32)),
        ("densenet_bc100", "small", (1, 28, 28)),
        ("densenet_bc100", "imagenet", (3, 32, 32)),
        # DenseNet-121's ImageNet stem leaves 7 px of a 28 px image for three transitions; their
        # ceil-mode pools (7 -> 4 -> 2 -> 1) keep the map from shrinking to nothing.
        ("densenet121", "imagenet", (1, 28, 28)),
    ],
)
def test_small_images_pass_with_either_stem(
    name: str, stem: str, shape: tuple[int, int, int]
) -> None:
    net = create_model(name, in_channels=shape[0], num_classes=10, stem=stem).eval()
    with torch.no_grad():
        assert net(torch.randn(2, *shape)).shape == (2, 10)


def test_init_follows_torchvision() -> None:
    net = create_model("densenet_bc100", num_classes=10)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)
    assert bool((net.classifier.bias == 0).all())


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="stem=.* is not one of"):
        create_model("densenet_bc100", stem="cifar")
    with pytest.raises(ValueError, match="compression"):
        create_model("densenet_bc100", compression=0.0)
