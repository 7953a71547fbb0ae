"""timm's model API on every registered net: timm's generic model tests (``tests/test_models.py``
of pytorch-image-models: ``test_model_default_cfgs``, ``test_model_forward_features``,
``test_model_forward_intermediates``) ported to the zoo at 3x32x32 with the small stem.

- ``forward_features`` is the unpooled map of ``num_features`` channels, ``forward_head(x,
  pre_logits=True)`` the ``head_hidden_size`` features before the classifier, whose weight is in
  the state dict under the name the net declares;
- ``reset_classifier(0)``: ``forward`` returns the pre-logits features; ``reset_classifier(0,
  "")`` and ``create_model(num_classes=0, global_pool="")``: the map; ``reset_classifier(n,
  pool)``: n logits through each of timm's pools (nets that pool to a fixed grid refuse them);
- ``feature_info`` reads as timm's ``FeatureInfo``; ``create_model(features_only=True,
  out_indices=...)`` returns the chosen stages' maps with its channels and strides;
- ``forward_intermediates`` gives every stage's map and ends with ``forward_features``' output;
  ``indices``, ``stop_early``, ``norm`` and ``prune_intermediate_layers`` behave as timm's;
- the MLP has no feature maps: it has the classifier half of the API, and says so for the rest.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_models import SLOW_EVERYWHERE
from timm.models import FeatureInfo
from torch import nn

from cnnzoo.models import create_model, get_spec, model_names
from cnnzoo.models.features import POOL_TYPES, ZooNet

SHAPE = (3, 32, 32)
NUM_CLASSES = 10
# every registered net but the MLP, which flattens the image first
CONV_NETS = [name for name in model_names() if name != "mlp"]


def _params(names: list[str]) -> list:
    # the heaviest nets (2-25 s to build and run here) join `make test-all` only
    return [
        pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_EVERYWHERE else []) for n in names
    ]


def _net(name: str, **overrides: object) -> ZooNet:
    """The net as training builds it for 3x32x32 images (small stem), in eval mode."""
    torch.manual_seed(0)
    net = get_spec(name).build(**{**_small(name), **overrides})
    assert isinstance(net, ZooNet)
    return net.eval()


def _small(name: str) -> dict[str, object]:
    """The arguments training gives the net for 3x32x32 images: the small stem (the MLP takes
    the image size instead)."""
    spec = get_spec(name)
    extra = {
        key: value for key, value in (("stem", "small"), ("image_size", 32)) if spec.accepts(key)
    }
    return {"in_channels": SHAPE[0], "num_classes": NUM_CLASSES, **extra}


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, *SHAPE)


@pytest.mark.parametrize("name", _params(model_names()))
@torch.no_grad()
def test_features_head_and_classifier_as_timms_default_cfgs(name: str, x: torch.Tensor) -> None:
    net = _net(name)
    assert net.num_classes == NUM_CLASSES and net.num_features > 0 and net.head_hidden_size > 0
    features = net.forward_features(x)
    pre_logits = net.forward_head(features, pre_logits=True)
    assert features.shape[1] == net.num_features
    assert features.ndim == (2 if name == "mlp" else 4)  # unpooled
    assert pre_logits.shape == (2, net.head_hidden_size)
    torch.testing.assert_close(net.forward_head(features), net(x))
    assert net(x).shape == (2, NUM_CLASSES)
    # timm's cfg["classifier"]: the name of the layer that gives the logits
    classifier = net.head_spec.classifier
    assert f"{classifier}.weight" in net.state_dict()
    assert net.get_classifier() is net.get_submodule(classifier)


@pytest.mark.parametrize("name", _params(model_names()))
@torch.no_grad()
def test_reset_classifier_0_gives_the_pre_logits_features(name: str, x: torch.Tensor) -> None:
    net = _net(name)
    pre_logits = net.forward_head(net.forward_features(x), pre_logits=True)
    net.reset_classifier(0)
    assert net.num_classes == 0 and isinstance(net.get_classifier(), nn.Identity)
    torch.testing.assert_close(net(x), pre_logits)


@pytest.mark.parametrize("name", _params(CONV_NETS))
@torch.no_grad()
def test_no_classifier_and_no_pooling_give_the_feature_map(name: str, x: torch.Tensor) -> None:
    net = _net(name)
    features = net.forward_features(x)
    net.reset_classifier(0, "")
    assert net.head_hidden_size == net.num_features
    torch.testing.assert_close(net(x), features)
    # through the constructor, as timm.create_model(name, num_classes=0, global_pool="")
    built = create_model(name, **{**_small(name), "num_classes": 0}, global_pool="").eval()
    assert built(x).shape == features.shape


@pytest.mark.parametrize("name", _params(model_names()))
@torch.no_grad()
def test_reset_classifier_gives_new_classes_through_each_pool(name: str, x: torch.Tensor) -> None:
    net = _net(name)
    net.reset_classifier(5)
    classifier = net.get_classifier()
    assert isinstance(classifier, nn.Linear)
    assert (classifier.in_features, classifier.out_features) == (net.head_hidden_size, 5)
    assert net(x).shape == (2, 5)
    for pool in POOL_TYPES:
        if pool in net.head_spec.pool_types:
            net.reset_classifier(5, pool)
            assert net(x).shape == (2, 5)
            assert net.head_hidden_size == net.num_features * (2 if pool == "catavgmax" else 1)
        else:  # AlexNet, LeNet: fixed-grid pooling; ConvNeXt's LayerNorm reads C features;
            # the MLP pools nothing
            with pytest.raises(ValueError, match="global_pool"):
                net.reset_classifier(5, pool)


@pytest.mark.parametrize("name", _params(CONV_NETS))
def test_feature_info_reads_as_timms(name: str) -> None:
    net = _net(name)
    info = FeatureInfo(net.feature_info, len(net.feature_info))  # checks rising reductions
    assert len(info) >= 3  # timm: "all models here should have at least 3 feature levels"
    modules = dict(net.named_modules())
    assert all(module in modules for module in info.module_name())
    assert info.channels()[-1] == net.num_features


@pytest.mark.parametrize("name", _params(CONV_NETS))
@torch.no_grad()
def test_forward_intermediates_ends_with_forward_features(name: str, x: torch.Tensor) -> None:
    net = _net(name)
    output, intermediates = net.forward_intermediates(x)
    assert len(intermediates) == len(net.feature_info)
    for info, feature in zip(net.feature_info, intermediates, strict=True):
        assert feature.shape[:2] == (2, info["num_chs"])
        # timm's bound; the small stems reach it exactly (stride-1 stems, ceil-mode pools)
        assert all(side <= math.ceil(32 / info["reduction"]) + 1 for side in feature.shape[2:])
        assert torch.isfinite(feature).all()
    assert torch.equal(output, net.forward_features(x))
    # norm=True: the final norm (PreAct ResNet's BN-ReLU; none elsewhere) on the last map too
    [last] = net.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)
    assert torch.equal(last, output)


@pytest.mark.parametrize("name", _params(CONV_NETS))
@torch.no_grad()
def test_forward_intermediates_indices_and_stop_early_as_timms(name: str, x: torch.Tensor) -> None:
    net = _net(name)
    every = net.forward_intermediates(x, intermediates_only=True)
    last_two = net.forward_intermediates(x, indices=2, intermediates_only=True)  # the last n
    assert [t.shape for t in last_two] == [t.shape for t in every[-2:]]
    first_and_last = net.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
    assert all(
        torch.equal(a, b) for a, b in zip(first_and_last, (every[0], every[-1]), strict=True)
    )
    final, early = net.forward_intermediates(x, indices=[1], stop_early=True)
    assert torch.equal(early[0], every[1]) and torch.equal(final, every[1])


@pytest.mark.parametrize("name", _params(CONV_NETS))
@torch.no_grad()
def test_features_only_returns_the_chosen_stages_maps(name: str, x: torch.Tensor) -> None:
    # timm's test_model_forward_features: channels and strides agree with feature_info
    everything = _net(name).forward_intermediates(x, intermediates_only=True)
    torch.manual_seed(0)  # the weights of _net(name)
    extractor = create_model(name, **_small(name), features_only=True).eval()
    maps = extractor(x)
    assert extractor.feature_info.channels() == [m.shape[1] for m in maps]
    assert len(maps) == len(everything)
    assert all(torch.equal(a, b) for a, b in zip(maps, everything, strict=True))

    torch.manual_seed(0)
    chosen = create_model(name, **_small(name), features_only=True, out_indices=(1, 2)).eval()
    maps = chosen(x)
    assert chosen.feature_info.channels() == [everything[i].shape[1] for i in (1, 2)]
    assert chosen.feature_info.reduction() == [
        _net(name).feature_info[i]["reduction"] for i in (1, 2)
    ]
    assert all(torch.equal(a, b) for a, b in zip(maps, everything[1:3], strict=True))
    # the stages after the last index and the head are gone (timm's pruning)
    last_stage = extractor.feature_info.module_name()[-1]
    assert isinstance(chosen.model.get_submodule(last_stage), nn.Identity)
    assert isinstance(chosen.model.get_classifier(), nn.Identity)


@pytest.mark.parametrize("name", _params(CONV_NETS))
@torch.no_grad()
def test_prune_intermediate_layers_keeps_what_the_indices_need(name: str, x: torch.Tensor) -> None:
    net = _net(name)
    before = net.forward_intermediates(x, indices=(0, 1), intermediates_only=True)
    assert net.prune_intermediate_layers((0, 1)) == [0, 1]
    after = net.forward_intermediates(x, indices=(0, 1), intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # the features now end at the last kept stage, and the head is gone
    assert net.num_features == net.feature_info[1]["num_chs"] and net.num_classes == 0
    assert torch.equal(net(x), after[-1])


def test_the_mlp_has_the_classifier_half_of_the_api_and_says_so_for_the_rest() -> None:
    net = _net("mlp")
    assert net.feature_info == []
    for call in (
        lambda: net.forward_intermediates(torch.randn(2, *SHAPE)),
        lambda: net.prune_intermediate_layers(1),
        lambda: create_model("mlp", features_only=True),
        lambda: net.reset_classifier(0, ""),
        lambda: net.reset_classifier(5, "avg"),
    ):
        with pytest.raises(ValueError, match="no feature map") as error:
            call()
        assert "\n" not in str(error.value)


def test_the_api_refuses_bad_arguments_in_one_line() -> None:
    net = _net("resnet20")  # 4 stages: the stem and three layers
    with pytest.raises(ValueError, match="4 feature stages .* out of range"):
        net.forward_intermediates(torch.randn(1, *SHAPE), indices=[4])
    with pytest.raises(ValueError, match="4 feature stages"):
        create_model("resnet20", features_only=True, out_indices=5)
    with pytest.raises(ValueError, match="output_fmt='NHWC'"):
        net.forward_intermediates(torch.randn(1, *SHAPE), output_fmt="NHWC")
    with pytest.raises(ValueError, match="global_pool='' .* num_classes=0"):
        net.reset_classifier(5, "")
    with pytest.raises(ValueError, match="global_pool='mean' is not one of: avg, max"):
        net.reset_classifier(5, "mean")
    net.reset_classifier(0, "")
    with pytest.raises(
        ValueError, match=r"head was removed .* reset_classifier\(5, global_pool='avg'\)"
    ):
        net.reset_classifier(5)
    net.reset_classifier(5, "avg")  # pooling again: a classifier fits
    assert net(torch.randn(2, *SHAPE)).shape == (2, 5)
    with pytest.raises(ValueError, match="out_indices .* features_only=True"):
        create_model("resnet20", out_indices=(1, 2))
