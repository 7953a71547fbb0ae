"""GoogLeNet: torchvision's network exactly (with and without the auxiliary classifiers), in
training its auxiliary outputs as torchvision's, Table 1 widths, a small stem for 28/32 px
images."""

import pytest
import torch
import torchvision

from cnnzoo.models import create_model
from cnnzoo.models.googlenet import INCEPTION_V1, GoogLeNet
from cnnzoo.models.stats import count_parameters as n_params


def torchvision_googlenet(aux_logits: bool, **kwargs: float) -> torch.nn.Module:
    return torchvision.models.googlenet(
        weights=None, aux_logits=aux_logits, transform_input=False, init_weights=True, **kwargs
    )


@pytest.mark.parametrize("aux_logits", [True, False])
def test_googlenet_equals_torchvision_at_imagenet_settings(aux_logits: bool) -> None:
    torch.manual_seed(0)
    ours = create_model("googlenet", aux_logits=aux_logits)
    reference = torchvision_googlenet(aux_logits)
    assert n_params(ours) == n_params(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), atol=1e-5, rtol=0)


def test_googlenet_parameter_counts() -> None:
    assert n_params(GoogLeNet(aux_logits=True)) == 13_004_888
    assert n_params(GoogLeNet(aux_logits=False)) == 6_624_904


def test_googlenet_aux_outputs_equal_torchvision_in_training() -> None:
    torch.manual_seed(0)
    ours = GoogLeNet(dropout=0.0)
    reference = torchvision_googlenet(True, dropout=0.0, dropout_aux=0.0)
    ours.load_state_dict(reference.state_dict(), strict=True)
    for aux in (ours.aux1, ours.aux2):
        aux.dropout.p = 0.0
    x = torch.randn(2, 3, 224, 224)
    theirs = reference.train()(x)
    outputs = ours.train()(x)
    assert type(outputs) is type(theirs)  # GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
    torch.testing.assert_close(tuple(outputs), tuple(theirs), atol=1e-5, rtol=0)


def test_table_1_widths_give_the_papers_output_channels() -> None:
    outputs = {name: spec.out_channels for name, spec in INCEPTION_V1.items()}
    assert outputs == {
        "3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512,
        "4d": 528, "4e": 832, "5a": 832, "5b": 1024,
    }  # fmt: skip


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_googlenet_returns_its_auxiliary_outputs_in_training_and_the_logits_in_eval(
    shape: tuple[int, int, int],
) -> None:
    net = GoogLeNet(in_channels=shape[0], num_classes=10, stem="small")
    x = torch.randn(2, *shape)
    logits, aux2, aux1 = net.train()(x)
    assert [o.shape for o in (logits, aux2, aux1)] == [(2, 10)] * 3
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 10)


def test_googlenet_without_aux_returns_the_logits_in_training() -> None:
    net = GoogLeNet(num_classes=10, stem="small", aux_logits=False).train()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_reset_classifier_resets_the_auxiliary_classifiers_too() -> None:
    net = GoogLeNet(num_classes=10, stem="small").train()
    net.reset_classifier(5)
    assert [o.shape for o in net(torch.randn(2, 3, 32, 32))] == [(2, 5)] * 3
    net.reset_classifier(0)  # no classes: no auxiliary classifiers, the pooled features
    assert net.aux1 is None and net.aux2 is None
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 1024)


def test_googlenet_small_stem_skips_the_early_pools() -> None:
    net = GoogLeNet(num_classes=10, stem="small")
    assert net.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 1024, 8, 8)


def test_googlenet_rejects_an_unknown_stem() -> None:
    with pytest.raises(ValueError, match="stem='cifar' is not one of: imagenet, small"):
        GoogLeNet(stem="cifar")


def test_transform_input_rescales_imagenet_normalised_rgb_to_minus_one_to_one() -> None:
    # torchvision's pretrained GoogLeNet reads (pixel - 0.5) / 0.5; the data comes normalised
    # with ImageNet's mean and std (test_models_weights checks the outputs against torchvision's)
    net = GoogLeNet(transform_input=True)
    pixels = torch.rand(2, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rescaled = net._transform_input((pixels - mean) / std)
    torch.testing.assert_close(rescaled, (pixels - 0.5) / 0.5)
    with pytest.raises(ValueError, match="in_channels=1"):
        GoogLeNet(in_channels=1, transform_input=True)
