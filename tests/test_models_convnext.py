"""ConvNeXt (Liu et al. 2022): torchvision equivalence through the key mapping, family behaviour."""

import pytest
import torch
import torchvision

from cnnzoo.models.convnext import ConvNeXt, LayerNorm2d, from_torchvision_state_dict
from cnnzoo.models.registry import create_model
from cnnzoo.models.stats import count_parameters as n_params

TORCHVISION_NAMES = ["convnext_tiny", "convnext_small", "convnext_base"]


def tiny_convnext(**kwargs: object) -> ConvNeXt:
    """A narrow, shallow ConvNeXt: same layout, cheap to build and run."""
    return ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), **kwargs)


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_param_count_equals_torchvision_and_its_state_dict_maps_onto_ours(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours, theirs = create_model(name), getattr(torchvision.models, name)(weights=None)
    assert n_params(ours) == n_params(theirs)
    ours.load_state_dict(from_torchvision_state_dict(theirs.state_dict()), strict=True, assign=True)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("convnext_tiny", 224),
        pytest.param("convnext_small", 224, marks=pytest.mark.slow),
        pytest.param("convnext_base", 224, marks=pytest.mark.slow),
    ],
)
def test_reproduces_torchvision_outputs_after_key_mapping(name: str, size: int) -> None:
    # Random weights everywhere, layer scale included: at its 1e-6 init the residual branches
    # would barely reach the output and a wrong block could still pass the comparison.
    torch.manual_seed(0)
    with torch.device("meta"):
        theirs, ours = getattr(torchvision.models, name)(weights=None), create_model(name)
    theirs.to_empty(device="cpu").eval()
    for p in theirs.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ours.load_state_dict(from_torchvision_state_dict(theirs.state_dict()), strict=True, assign=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs(x), atol=1e-5, rtol=0)


def test_drop_path_rates_rise_linearly_from_zero_to_drop_path_rate() -> None:
    with torch.device("meta"):
        net = create_model("convnext_tiny", drop_path_rate=0.3)
    rates = [block.drop_path.p for stage in net.stages for block in stage]
    assert len(rates) == 3 + 3 + 9 + 3
    assert rates == pytest.approx([0.3 * i / 17 for i in range(18)])
    assert all(block.drop_path.mode == "row" for stage in net.stages for block in stage)


def test_registered_rates_are_the_papers() -> None:
    for name, rate in [("convnext_tiny", 0.1), ("convnext_small", 0.4), ("convnext_base", 0.5)]:
        with torch.device("meta"):
            last_block = create_model(name).stages[-1][-1]
        assert last_block.drop_path.p == pytest.approx(rate)


def test_layer_scale_starts_at_layer_scale_init_value() -> None:
    for value in (1e-6, 0.5):
        gammas = [b.gamma for s in tiny_convnext(layer_scale_init_value=value).stages for b in s]
        assert all(bool((g == torch.tensor(value)).all()) for g in gammas)
        assert gammas[0].shape == (8,)


def test_init_is_the_papers_and_head_init_scale_scales_the_head() -> None:
    torch.manual_seed(0)
    net = tiny_convnext()
    torch.manual_seed(0)
    scaled = tiny_convnext(head_init_scale=0.001)
    torch.testing.assert_close(scaled.head.weight, 0.001 * net.head.weight)
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(bool((m.bias == 0).all()) for m in convs)
    assert net.stages[2][0].pwconv1.weight.std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize(
    ("stem", "shape", "final_size"),
    [
        ("small", (3, 32, 32), 4),  # 32 -> 16 -> 8 -> 4
        ("small", (1, 28, 28), 4),  # 28 -> 14 -> 7 -> 4 (odd sides rounded up)
        ("imagenet", (3, 32, 32), 1),  # 8 -> 4 -> 2 -> 1
        ("imagenet", (1, 28, 28), 1),  # 7 -> 4 -> 2 -> 1
        ("imagenet", (3, 224, 224), 7),  # 56 -> 28 -> 14 -> 7
    ],
)
def test_stage_resolutions_for_small_and_imagenet_inputs(
    stem: str, shape: tuple[int, int, int], final_size: int
) -> None:
    net = tiny_convnext(in_channels=shape[0], num_classes=10, stem=stem).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert net.forward_features(x).shape == (2, net.num_features, final_size, final_size)
        assert net(x).shape == (2, 10)


def test_layernorm2d_normalises_over_channels() -> None:
    ln2d, ln = LayerNorm2d(8), torch.nn.LayerNorm(8, eps=1e-6)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(ln2d(x), ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="stem=.* is not one of"):
        tiny_convnext(stem="patchify")
    with pytest.raises(ValueError, match="one entry per stage"):
        ConvNeXt(depths=(3, 3, 9, 3), dims=(96, 192, 384))
    with pytest.raises(ValueError, match="drop_path_rate"):
        tiny_convnext(drop_path_rate=1.0)
