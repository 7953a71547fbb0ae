"""ResNet (He et al. 2016): torchvision equivalence, the paper's CIFAR counts, family behaviour."""

import pytest
import torch
import torchvision

from cnnzoo.models.registry import create_model
from cnnzoo.models.resnet import CIFAR_RESNETS, IMAGENET_RESNETS, ResNet, ZeroPadShortcut
from cnnzoo.models.stats import count_parameters as n_params

TORCHVISION_NAMES = [*IMAGENET_RESNETS, "wide_resnet50_2"]


def torchvision_model(name: str) -> torch.nn.Module:
    return getattr(torchvision.models, name)(weights=None)


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_param_count_and_state_dict_layout_equal_torchvision(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours, theirs = create_model(name), torchvision_model(name)
    assert n_params(ours) == n_params(theirs)
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        pytest.param("resnet34", marks=pytest.mark.slow),
        pytest.param("resnet50", marks=pytest.mark.slow),
        pytest.param("resnet101", marks=pytest.mark.slow),
        pytest.param("resnet152", marks=pytest.mark.slow),
        pytest.param("wide_resnet50_2", marks=pytest.mark.slow),
    ],
)
def test_reproduces_torchvision_outputs_at_224(name: str) -> None:
    torch.manual_seed(0)
    theirs = torchvision_model(name).eval()
    ours = create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "block, tv_block, width_per_group",
    [
        ("basic", torchvision.models.resnet.BasicBlock, 64),
        ("bottleneck", torchvision.models.resnet.Bottleneck, 64),
        ("bottleneck", torchvision.models.resnet.Bottleneck, 128),  # wide_resnet50_2's blocks
    ],
)
def test_one_block_per_stage_reproduces_torchvision(block, tv_block, width_per_group) -> None:
    # A cheap default-run stand-in for the full 224 px comparisons above (marked slow): the same
    # blocks, shortcuts and stem as resnet18/50/wide_resnet50_2, one block per stage.
    torch.manual_seed(0)
    theirs = torchvision.models.resnet.ResNet(
        tv_block, [1, 1, 1, 1], width_per_group=width_per_group
    )
    ours = ResNet(block=block, layers=(1, 1, 1, 1), width_per_group=width_per_group)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), atol=1e-5, rtol=0)


PAPER_CIFAR_PARAMS = {  # §4.2, Table 6
    "resnet20": 0.27e6,
    "resnet32": 0.46e6,
    "resnet44": 0.66e6,
    "resnet56": 0.85e6,
    "resnet110": 1.7e6,
}


@pytest.mark.parametrize("name", list(PAPER_CIFAR_PARAMS))
def test_cifar_resnet_param_count_matches_paper(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=10)
    assert n_params(model) == pytest.approx(PAPER_CIFAR_PARAMS[name], rel=0.02)


def test_cifar_resnets_are_depth_6n_plus_2_with_parameter_free_shortcuts() -> None:
    for name, n in CIFAR_RESNETS.items():
        model = create_model(name, num_classes=10)
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) + 1 == 6 * n + 2 == int(name.removeprefix("resnet"))  # + 1: the fc
        assert all(m.kernel_size == (3, 3) for m in convs)  # option A: no 1x1 projections
        assert sum(isinstance(m, ZeroPadShortcut) for m in model.modules()) == 2


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels() -> None:
    x = torch.randn(2, 16, 7, 7)
    y = ZeroPadShortcut(extra_channels=16, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()


def test_features_and_head_split_the_forward() -> None:
    model = create_model("resnet20", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features, 8, 8) == (2, 64, 8, 8)
    torch.testing.assert_close(model.forward_head(features), model(x))


@pytest.mark.parametrize("block, last_bn", [("basic", "bn2"), ("bottleneck", "bn3")])
def test_zero_init_residual_zeroes_only_the_last_bn_of_each_branch(
    block: str, last_bn: str
) -> None:
    model = ResNet(block=block, layers=(1, 1), widths=(8, 16), zero_init_residual=True)
    for stage in model.stages:
        for unit in stage:
            for name, bn in unit.named_modules():
                if isinstance(bn, torch.nn.BatchNorm2d):
                    assert bool((bn.weight == 0).all()) == (name == last_bn)
    assert (model.bn1.weight == 1).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stem": "cifar"},
        {"block": "wide"},
        {"shortcut": "C"},
        {"layers": (2, 2, 2)},  # three counts for four default widths
        {"layers": (2, 0, 2, 2)},
        {"width_per_group": 128},  # a basic block has no inner width
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ResNet(**{"block": "basic", "layers": (2, 2, 2, 2), **kwargs})
