"""Pre-activation ResNet (He et al. 2016b) and Wide ResNet (Zagoruyko & Komodakis 2016)."""

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.models.preact_resnet import PreActBlock, PreActBottleneck, PreActResNet, wide_resnet
from cnnzoo.models.registry import create_model
from cnnzoo.models.stats import count_parameters as n_params

NAMES = ["preact_resnet18", "preact_resnet164", "preact_resnet1001", "wrn28_10"]


PAPER_PARAMS = {  # at 10 classes, small stem
    "preact_resnet164": 1.7e6,  # He et al. 2016b
    "preact_resnet1001": 10.2e6,
    "wrn28_10": 36.5e6,  # Zagoruyko & Komodakis 2016
}


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_param_count_matches_paper(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=10)
    assert n_params(model) == pytest.approx(PAPER_PARAMS[name], rel=0.02)


@pytest.mark.parametrize(
    "depth, widen_factor, millions",  # as the WRN paper gives them: millions, one decimal
    [(40, 1, 0.6), (40, 4, 8.9), (16, 8, 11.0), (28, 10, 36.5), (16, 4, 2.7)],
)
def test_any_wrn_depth_and_width_matches_paper(depth: int, widen_factor: int, millions: float):
    with torch.device("meta"):
        model = wide_resnet(depth=depth, widen_factor=widen_factor, num_classes=10)
    assert round(n_params(model) / 1e6, 1) == millions
    assert len(model.stages) == 3 and all(len(s) == (depth - 4) // 6 for s in model.stages)


def test_preact_resnet18_is_kuangliu_plus_the_final_bn() -> None:
    # kuangliu/pytorch-cifar's PreActResNet18 has 11,171,146 parameters at 10 classes; it omits
    # the final BN-ReLU the paper places after the last addition, which adds 2 x 512.
    with torch.device("meta"):
        model = create_model("preact_resnet18", num_classes=10)
    assert n_params(model) == 11_171_146 + 2 * 512


@pytest.mark.parametrize("depth", [27, 4, 0, 29])
def test_wrn_depth_must_be_6n_plus_4(depth: int) -> None:
    with pytest.raises(ValueError, match="6n \\+ 4"):
        wide_resnet(depth=depth, widen_factor=2)


def test_wrn_widen_factor_must_be_positive() -> None:
    with pytest.raises(ValueError, match="widen_factor"):
        wide_resnet(depth=16, widen_factor=0)


@pytest.mark.parametrize("block_cls", [PreActBlock, PreActBottleneck])
def test_identity_shortcut_passes_the_input_untouched(block_cls: type) -> None:
    # With the residual branch's last conv at zero, a pre-activation unit is exactly the
    # identity: no BN or ReLU sits on the shortcut path (the paper's point).
    unit = block_cls(16 * block_cls.expansion, 16)
    last_conv = unit.conv2 if block_cls is PreActBlock else unit.conv3
    torch.nn.init.zeros_(last_conv.weight)
    x = torch.randn(2, 16 * block_cls.expansion, 8, 8)
    torch.testing.assert_close(unit(x), x)


def test_wrn_units_put_dropout_between_the_convs() -> None:
    with torch.device("meta"):
        model = create_model("wrn28_10")
    units = [u for s in model.stages for u in s]
    assert all(isinstance(u.dropout, torch.nn.Dropout) and u.dropout.p == 0.3 for u in units)
    assert len(units) == 12


def test_dropout_is_random_in_training_and_off_in_eval() -> None:
    # drawn residual convs: a zero conv after the dropout would hide its masks
    model = wide_resnet(
        depth=10, widen_factor=1, dropout=0.3, num_classes=10, zero_init_residual=False
    )
    x = torch.randn(4, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_bottleneck_refuses_dropout() -> None:
    with pytest.raises(ValueError, match="dropout"):
        PreActResNet(block="bottleneck", layers=(1, 1, 1), widths=(16, 32, 64), dropout=0.3)


@pytest.mark.parametrize(
    "kwargs",
    [{"stem": "cifar"}, {"block": "wide"}, {"layers": (1, 1)}, {"dropout": 1.0}],
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PreActResNet(**{"block": "basic", "layers": (1, 1, 1), "widths": (16, 32, 64), **kwargs})


def test_features_end_with_the_final_bn_relu_and_head_splits_the_forward() -> None:
    model = PreActResNet(block="bottleneck", layers=(1, 1, 1), widths=(16, 32, 64)).eval()
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features, 8, 8) == (2, 256, 8, 8)
    assert (features >= 0).all()
    torch.testing.assert_close(model.forward_head(features), model(x))


def test_wrn_config_builds_any_depth_and_width_from_overrides() -> None:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(
            "train",
            ["model=wrn28_10", "data=cifar10", "+model.net.depth=16", "+model.net.widen_factor=8"],
        )
    with torch.device("meta"):
        model = instantiate(cfg.model.net)
    assert n_params(model) == pytest.approx(11.0e6, rel=0.02)  # WRN-16-8 in the WRN paper


@pytest.mark.parametrize("name", ["preact_resnet164", "preact_resnet1001"])
def test_deep_nets_give_finite_moderate_logits_at_init(name: str) -> None:
    # Issue #11: without the zero-initialised last conv of each residual branch, the activations
    # grew ~1.36x per unit: preact_resnet164's largest logit was ~1e7, preact_resnet1001's NaN.
    # A real build (10M parameters for 1001, ~2 s on one CPU thread): the meta device has no values.
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert torch.isfinite(logits).all()
    assert logits.abs().max() < 10


@pytest.mark.parametrize("name", ["preact_resnet164", "preact_resnet1001", "wrn28_10"])
def test_zero_init_residual_changes_values_not_parameters(name: str) -> None:
    with torch.device("meta"):
        default = create_model(name, num_classes=10)
        drawn = create_model(name, num_classes=10, zero_init_residual=False)
    assert n_params(default) == n_params(drawn) == pytest.approx(PAPER_PARAMS[name], rel=0.02)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_every_unit_starts_with_a_zero_last_conv_unless_asked_not_to(block: str) -> None:
    def last_convs(model: PreActResNet) -> list[torch.nn.Conv2d]:
        units = [u for s in model.stages for u in s]
        return [u.conv2 if block == "basic" else u.conv3 for u in units]

    kwargs = {"block": block, "layers": (2, 2, 2), "widths": (16, 32, 64)}
    assert all(not conv.weight.any() for conv in last_convs(PreActResNet(**kwargs)))
    drawn = PreActResNet(**kwargs, zero_init_residual=False)
    assert all(conv.weight.std() > 0 for conv in last_convs(drawn))
