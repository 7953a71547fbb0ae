"""Every registered network, and every model config, behaves the same way.

- each net maps a 1x28x28 or a 3x32x32 batch to finite ``N x num_classes`` logits (with the stem
  ``stem_for`` picks for that size) and fits a fixed batch: a few Adam steps lower its loss;
- each ``configs/model/<name>.yaml`` names a registered model and mirrors its registry row, and
  composes and instantiates through Hydra;
- the registry refuses a taken name and lists the valid ones for an unknown name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from cnnzoo.config import CONFIG_DIR, stem_for
from cnnzoo.models import create_model, get_spec, model_names, register

SMALL_MNIST = (1, 28, 28)
SMALL_CIFAR = (3, 32, 32)
NUM_CLASSES = 10
BATCH = 4
STEPS = 3

# Measured on one CPU thread: nets costing ~2-5 s a case run on 1x28x28 by default and on
# 3x32x32 only in `make test-all`; the heaviest (5-25 s a case) only there, on both inputs (their
# family tests still run by default).
SLOW_ON_CIFAR = {
    "alexnet", "convnext_tiny", "densenet121", "densenet169", "densenet201", "googlenet",
    "resnet34", "resnet50",
}  # fmt: skip
SLOW_EVERYWHERE = {
    "convnext_base", "convnext_small", "preact_resnet1001", "resnet101", "resnet152",
    "wide_resnet50_2", "wrn28_10",
}  # fmt: skip
CONFIG_ONLY_KEYS = {"in_channels", "num_classes", "stem"}
LIBRARY_CONFIGS = {"_base", "timm", "torchvision"}


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
    model = create_model(
        name, in_channels=shape[0], num_classes=NUM_CLASSES, stem=stem_for(shape[1])
    )
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


def _model_configs() -> list[Path]:
    paths = sorted((CONFIG_DIR / "model").glob("*.yaml"))
    return [path for path in paths if path.stem not in LIBRARY_CONFIGS]


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def test_every_registered_model_has_a_config() -> None:
    assert sorted(path.stem for path in _model_configs()) == model_names()


@pytest.mark.parametrize("path", _model_configs(), ids=lambda path: path.stem)
def test_model_config_mirrors_its_registry_row(path: Path) -> None:
    spec = get_spec(path.stem)
    net = OmegaConf.to_container(OmegaConf.load(path).net, resolve=False)
    assert net.pop("_target_") == spec.target

    def comparable(row: dict) -> dict:
        return {
            key: _plain(value)
            for key, value in row.items()
            if key not in CONFIG_ONLY_KEYS and not (isinstance(value, str) and "${" in value)
        }

    assert comparable(net) == comparable(spec.kwargs)


@pytest.mark.parametrize("path", _model_configs(), ids=lambda path: path.stem)
def test_model_config_composes_and_instantiates(path: Path) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name="train", overrides=[f"model={path.stem}"])
    # the meta device checks the constructor takes the config without spending time on weights
    with torch.device("meta"):
        net = instantiate(cfg.model.net)
    assert isinstance(net, nn.Module)


def test_registry_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("resnet18", nn.Identity, paper="")


def test_unknown_model_error_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet18") as error:
        create_model("resnet19")
    assert all(name in str(error.value) for name in model_names())
