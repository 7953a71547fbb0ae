"""Every registered network, and every model config, behaves the same way.

- each net, built for a 1x28x28 or a 3x32x32 batch as training builds it (the stem ``stem_for``
  picks for that size), maps it to finite ``N x num_classes`` logits and fits it: a few Adam
  steps lower its loss;
- one training step of the real ``ImageClassifier`` gives every parameter of every net a
  gradient (GoogLeNet's auxiliary classifiers too), and ``aux_loss_weight`` weighs the
  auxiliary losses of GoogLeNet and torchvision's Inception-v3; in eval mode they return logits;
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
from cnnzoo.models.common import stem_for
from cnnzoo.models.stats import count_parameters
from cnnzoo.module import ImageClassifier, split_logits

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
    logits, _ = split_logits(model(x))  # GoogLeNet's auxiliary outputs too, in training
    return F.cross_entropy(logits, y)


@pytest.mark.parametrize(("name", "shape"), _cases())
def test_every_model_gives_finite_logits_and_fits_a_batch(
    name: str, shape: tuple[int, int, int]
) -> None:
    model = get_spec(name).build_for(shape, NUM_CLASSES)
    x = torch.randn(BATCH, *shape)
    y = torch.arange(BATCH) % NUM_CLASSES

    logits, _ = split_logits(model(x))
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


def _classifier(net: dict, *, aux_loss_weight: float = 0.3) -> ImageClassifier:
    """The training module, as a config builds it (plain SGD: no scheduler, no trainer)."""
    optimizer = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}
    return ImageClassifier(
        net=net, num_classes=NUM_CLASSES, optimizer=optimizer, aux_loss_weight=aux_loss_weight
    )


def _zoo_net(name: str, shape: tuple[int, int, int]) -> dict:
    """A registered net's config for ``shape`` images, as configs/model/<name>.yaml composes it."""
    spec = get_spec(name)
    extra = {"stem": stem_for(shape[1]), "image_size": shape[1]}
    net = {"_target_": "cnnzoo.models.create_model", "name": name, "in_channels": shape[0]}
    return {
        **net,
        "num_classes": NUM_CLASSES,
        **{k: v for k, v in extra.items() if spec.accepts(k)},
    }


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_EVERYWHERE else [])
        for n in model_names()
    ],
)
def test_every_parameter_gets_a_gradient_in_a_training_step(name: str) -> None:
    # timm's test_model_backward, through the training module's own loss (auxiliary ones too)
    model = _classifier(_zoo_net(name, SMALL_MNIST)).train()
    x, y = torch.randn(2, *SMALL_MNIST), torch.tensor([0, 1])
    model.training_step((x, y), 0).backward()
    without = [n for n, p in model.net.named_parameters() if p.grad is None]
    assert not without, f"{name}: no gradient for {without}"


AUX_NETS = {
    "googlenet": (_zoo_net("googlenet", SMALL_MNIST), SMALL_MNIST),
    # torchvision's Inception-v3: in training (logits, aux); its aux head needs its 299 px
    "torchvision_inception_v3": (
        {"_target_": "cnnzoo.models.backbones.torchvision_backbone", "name": "inception_v3",
         "in_channels": 3, "num_classes": NUM_CLASSES, "init_weights": False},
        (3, 299, 299),
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "net", ["googlenet", pytest.param("torchvision_inception_v3", marks=pytest.mark.slow)]
)
def test_aux_loss_weight_weighs_the_auxiliary_losses_in_training(net: str) -> None:
    config, shape = AUX_NETS[net]
    model = _classifier(config).train()
    x, y = torch.randn(2, *shape), torch.tensor([0, 1])
    torch.manual_seed(1)  # the same dropout masks in every forward below
    outputs = model.net(x)
    assert isinstance(outputs, tuple), "in training the net returns its auxiliary outputs too"
    logits, *aux = outputs
    expected_aux = sum(F.cross_entropy(a, y) for a in aux)
    assert len(aux) in (1, 2) and expected_aux > 0
    losses = []
    for weight in (0.0, 0.3, 1.0):
        model.hparams["aux_loss_weight"] = weight
        torch.manual_seed(1)
        losses.append(model.training_step((x, y), 0))
        expected = F.cross_entropy(logits, y) + weight * expected_aux
        torch.testing.assert_close(losses[-1], expected)
    assert losses[0] < losses[1] < losses[2]

    model.eval()  # no auxiliary outputs: the logits, and validation's loss is theirs alone
    with torch.no_grad():
        logits = model(x)
        assert isinstance(logits, torch.Tensor) and logits.shape == (2, NUM_CLASSES)
        model.validation_step((x, y), 0)
    stats = model._stats("val").compute()
    torch.testing.assert_close(stats["loss"], F.cross_entropy(logits, y))


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
