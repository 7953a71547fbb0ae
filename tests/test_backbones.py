"""timm and torchvision backbones: built by name for any channels/classes, trained through the
real pipeline, with pretrained weights from a local file or through their libraries' caches.

No test touches the network: the Hugging Face Hub is in offline mode, torch hub's downloads fail
at once, and torchvision's "downloads" are state dicts written into a temporary torch hub cache.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path
from urllib.error import URLError

import huggingface_hub
import pytest
import timm
import torch
import torchvision
from cli import QUIET
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch import nn

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.errors import UserError
from cnnzoo.models.backbones import timm_backbone, torchvision_backbone


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Both hubs as on a machine without network, with empty caches."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url: str, *args, **kwargs) -> None:
        raise URLError("offline in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


def _net_from_config(*overrides: str) -> nn.Module:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides))
    return instantiate(cfg.model.net).eval()


@pytest.mark.parametrize(
    "name", ["resnet18", "convnext_nano", "efficientnet_b0", "vit_tiny_patch16_224"]
)
def test_timm_model_builds_for_one_channel_and_ten_classes(name: str) -> None:
    # image_size becomes the ViT's img_size; the convnets ignore it
    model = timm_backbone(name=name, in_channels=1, num_classes=10, image_size=32).eval()
    logits = model(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def test_timm_config_defaults_to_resnet18_and_passes_drop_path_rate() -> None:
    model = _net_from_config("model=timm", "model.net.drop_path_rate=0.1")
    assert model.default_cfg["architecture"] == "resnet18"
    assert any(isinstance(module, timm.layers.DropPath) for module in model.modules())
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_pretrained_offline_without_a_file_names_checkpoint_path() -> None:
    with pytest.raises(UserError, match="could not fetch the weights.*model.net.checkpoint_path"):
        timm_backbone(name="resnet18", in_channels=1, num_classes=10, pretrained=True)


def test_pretrained_without_a_file_asks_timm_for_its_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # online, timm downloads the weights and adapts them itself: its call is all cnnzoo decides
    calls: list[dict] = []
    real_create_model = timm.create_model

    def create_model(name: str, **kwargs) -> nn.Module:
        calls.append(kwargs)
        return real_create_model(name, **{**kwargs, "pretrained": False})

    monkeypatch.setattr(timm, "create_model", create_model)
    timm_backbone(name="resnet18", in_channels=1, num_classes=10, pretrained=True)
    assert [(c["pretrained"], c["in_chans"], c["num_classes"]) for c in calls] == [(True, 1, 10)]


def test_unknown_names_list_close_matches() -> None:
    with pytest.raises(ValueError, match="unknown timm model 'resnt18'; close matches: resnet18"):
        timm_backbone(name="resnt18", in_channels=1, num_classes=10)
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet5'.*resnet50"):
        torchvision_backbone(name="resnet5", in_channels=1, num_classes=10)


def test_timm_weights_from_a_local_file_round_trip(tmp_path: Path) -> None:
    source = timm_backbone(name="resnet18", in_channels=1, num_classes=10).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)

    loaded = _net_from_config(
        "model=timm", "model.net.pretrained=true", f"model.net.checkpoint_path={path}"
    )
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)


def test_imagenet_weights_adapt_to_one_channel_and_new_classes(tmp_path: Path) -> None:
    imagenet = timm_backbone(name="resnet18", in_channels=3, num_classes=1000)
    path = tmp_path / "imagenet.pth"
    torch.save(imagenet.state_dict(), path)

    model = timm_backbone(
        name="resnet18", in_channels=1, num_classes=10, pretrained=True, checkpoint_path=str(path)
    )
    # RGB kernels summed into one grey channel; the body loaded; a new 10-class classifier
    torch.testing.assert_close(model.conv1.weight, imagenet.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)
    assert model.fc.weight.shape == (10, 512)


def test_torchvision_replaces_the_first_conv_for_other_channel_counts() -> None:
    model = _net_from_config("model=torchvision").eval()  # resnet18 on 1-channel MNIST
    assert model.conv1.in_channels == 1
    assert model.conv1.out_channels == 64 and model.conv1.kernel_size == (7, 7)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    vgg = torchvision_backbone(name="vgg11", in_channels=1, num_classes=10)
    assert vgg.features[0].in_channels == 1


def test_torchvision_weights_from_a_local_file_round_trip(tmp_path: Path) -> None:
    source = torchvision_backbone(name="resnet18", in_channels=1, num_classes=10).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)

    loaded = _net_from_config("model=torchvision", f"model.net.weights={path}")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)


def _cache_torchvision_weights(name: str, weights: str, state: dict) -> None:
    url = torchvision.models.get_model_weights(name)[weights].url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_torchvision_weights_by_name_come_from_the_hub_cache_adapted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    imagenet = torchvision.models.efficientnet_b0().eval()
    _cache_torchvision_weights("efficientnet_b0", "IMAGENET1K_V1", imagenet.state_dict())

    same = _net_from_config("model=torchvision", "data=cifar10", "model.net.name=efficientnet_b0",
                            "model.net.weights=DEFAULT", "model.num_classes=1000",
                            "model.net.num_classes=1000")  # fmt: skip
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(same(x), imagenet(x))

    with caplog.at_level(logging.INFO, logger="cnnzoo.models.weights"):
        grey = torchvision_backbone(
            name="efficientnet_b0", in_channels=1, num_classes=10, weights="IMAGENET1K_V1"
        )
    stem = imagenet.features[0][0].weight
    torch.testing.assert_close(grey.features[0][0].weight, stem.sum(1, keepdim=True))
    assert grey.classifier[1].weight.shape == (10, 1280)
    assert caplog.messages == [
        "torchvision efficientnet_b0: loaded IMAGENET1K_V1 (EfficientNet_B0_Weights.IMAGENET1K_V1)"
        "; features.0.0 adapted from 3 to 1 input channels; classifier.1 re-initialised for 10 "
        "classes"
    ]


def test_torchvision_googlenet_weights_turn_transform_input_on_as_torchvision() -> None:
    reference = torchvision.models.googlenet(init_weights=True, transform_input=True).eval()
    _cache_torchvision_weights("googlenet", "IMAGENET1K_V1", reference.state_dict())
    model = torchvision_backbone(
        name="googlenet",
        in_channels=3,
        num_classes=1000,
        weights="IMAGENET1K_V1",
        init_weights=True,
    ).eval()
    assert model.transform_input
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), reference(x))


def test_torchvision_weights_offline_say_where_to_put_the_file() -> None:
    with pytest.raises(UserError, match=r"resnet18-f37072fd\.pth.*model\.net\.weights="):
        torchvision_backbone(
            name="resnet18", in_channels=3, num_classes=10, weights="IMAGENET1K_V1"
        )
    with pytest.raises(ValueError, match="choose IMAGENET1K_V1, DEFAULT"):
        torchvision_backbone(name="resnet18", in_channels=3, num_classes=10, weights="V2")


def test_timm_backbone_trains_through_the_pipeline_and_logs_its_size(tmp_path: Path) -> None:
    from conftest import run_training

    run_training(
        tmp_path,
        "model=timm",
        "model.net.name=resnet18",
        "debug=limit",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        *QUIET,
    )
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("model/params")]
    params = sum(
        p.numel()
        for p in timm_backbone(name="resnet18", in_channels=1, num_classes=10).parameters()
    )
    assert float(rows[0]["model/params"]) == params
    assert float(rows[0]["model/flops"]) > 0


def test_torchvision_googlenet_trains_with_its_auxiliary_outputs(tmp_path: Path) -> None:
    from conftest import run_training

    # in training torchvision's GoogLeNet returns (logits, aux2, aux1): both aux losses count
    record = run_training(tmp_path / "run", "debug=fdr", "model=torchvision",
                          "model.net.name=googlenet", *QUIET)  # fmt: skip
    assert math.isfinite(record["metrics"]["train/loss"])
    assert math.isfinite(record["metrics"]["test/loss"])
