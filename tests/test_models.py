"""Every registered network, and every model config, behaves the same way.

- each net, built for a 1x28x28 or a 3x32x32 batch as training builds it (the stem ``stem_for``
  picks for that size), maps it to finite ``N x num_classes`` logits and fits it: a few Adam
  steps lower its loss;
- every registered net has a config ``model/<name>``, every such config names a registered net
  (the variant's numbers live in the registry only), and composes and instantiates through Hydra;
  a constructor argument stays overridable from the command line;
- the registry refuses a taken name and lists the valid ones for an unknown name.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from cnnzoo.config import CONFIG_MODULE, config_options
from cnnzoo.models import create_model, get_spec, model_names, register
from cnnzoo.models.stats import count_parameters

SMALL_MNIST = (1, 28, 28)
SMALL_CIFAR = (3, 32, 32)
NUM_CLASSES = 10
BATCH = 4
STEPS = 3

# Measured on one CPU thread: nets costing ~2-5 s a case run on 1x28x28 by default and on
# 3x32x32 only in `make test-all`; the heaviest (5-25 s a case) only there, on both inputs (their
# family tests still run by default).
SLOW_ON_CIFAR = {"alexnet", "convnext_tiny", "densenet121", "googlenet"}
SLOW_EVERYWHERE = {
    "convnext_base", "convnext_small", "densenet169", "densenet201", "preact_resnet1001",
    "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wrn28_10",
}  # fmt: skip
LIBRARY_CONFIGS = {"timm", "torchvision"}


def _cases() -> list:
    cases = []
    for name in model_names():
        for shape in (SMALL_MNIST, SMALL_CIFAR):
            slow = name in SLOW_EVERYWHERE or (shape == SMALL_CIFAR and name in SLOW_ON_CIFAR)
            marks = [pytest.mark.slow] if slow else []
            cases.append(pytest.param(name, shape, marks=marks, id=f"{name}-{shape[0]}x{shape[1]}"))
    return cases


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # the same dropout / drop-path masks before and after training: only the weights differ
    torch.manual_seed(1)
    return F.cross_entropy(model(x), y)


@pytest.mark.parametrize(("name", "shape"), _cases())
def test_every_model_gives_finite_logits_and_fits_a_batch(
    name: str, shape: tuple[int, int, int]
) -> None:
    model = get_spec(name).build_for(shape, NUM_CLASSES)
    x = torch.randn(BATCH, *shape)
    y = torch.arange(BATCH) % NUM_CLASSES

    logits = model(x)
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(logits).all()

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = _loss(model, x, y)
    for _ in range(STEPS):
        optimizer.zero_grad()
        _loss(model, x, y).backward()
        optimizer.step()
    after = _loss(model, x, y)
    assert after < before


@pytest.mark.parametrize("name", model_names())
def test_get_classifier_is_the_layer_that_gives_the_logits(name: str) -> None:
    # timm's name: what fine-tuning re-initialises and keeps at the full learning rate
    with torch.device("meta"):
        model = create_model(name, num_classes=7)
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 7
    assert classifier is [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def _compose(*overrides: str) -> DictConfig:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def _zoo_configs() -> list[str]:
    return [name for name in config_options("model") if name not in LIBRARY_CONFIGS]


def test_every_registered_net_has_a_config_and_every_config_names_one() -> None:
    assert _zoo_configs() == model_names()
    for name in _zoo_configs():
        net = _compose(f"model={name}").model.net
        assert net._target_ == "cnnzoo.models.create_model"
        assert net.name == name


@pytest.mark.parametrize("name", _zoo_configs())
def test_model_config_composes_and_instantiates(name: str) -> None:
    cfg = _compose(f"model={name}")
    # the meta device checks the constructor takes the config without spending time on weights
    with torch.device("meta"):
        net = instantiate(cfg.model.net)
    assert isinstance(net, nn.Module)
    assert count_parameters(net) == count_parameters(get_spec(name).build_for((1, 28, 28), 10))


def test_a_constructor_argument_is_overridable_from_the_command_line() -> None:
    cfg = _compose("model=resnet18", "+model.net.layers=[3,4,6,3]")
    with torch.device("meta"):
        net = instantiate(cfg.model.net)
    with torch.device("meta"):
        resnet34 = create_model("resnet34", in_channels=1, num_classes=10, stem="small")
    assert count_parameters(net) == count_parameters(resnet34)


def test_registry_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("resnet18", nn.Identity, paper="")


def test_unknown_model_error_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet18") as error:
        create_model("resnet19")
    assert all(name in str(error.value) for name in model_names())
