"""timm and torchvision backbones: built by name for any channels/classes, trained through the
real pipeline, and loaded from local weight files (there is no hub access)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import timm
import torch
from cli import QUIET, run
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch import nn

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.models.backbones import timm_backbone, torchvision_backbone


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


def test_pretrained_without_a_file_says_there_is_no_hub() -> None:
    with pytest.raises(ValueError, match="no model-hub access.*checkpoint_path"):
        timm_backbone(name="resnet18", in_channels=1, num_classes=10, pretrained=True)


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

    loaded = _net_from_config("model=torchvision", f"model.net.weights_path={path}")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)


def test_torchvision_hub_weights_are_refused_with_the_alternative() -> None:
    with pytest.raises(ValueError, match="weights_path"):
        torchvision_backbone(
            name="resnet18", in_channels=3, num_classes=10, weights="IMAGENET1K_V1"
        )


def test_timm_backbone_trains_through_the_pipeline_and_logs_its_size(tmp_path: Path) -> None:
    run(
        "train.py",
        f"hydra.run.dir={tmp_path}",
        "model=timm",
        "model.net.name=resnet18",
        "debug=limit",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        *QUIET,
    )
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["status"] == "completed"
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("model/params")]
    params = sum(
        p.numel()
        for p in timm_backbone(name="resnet18", in_channels=1, num_classes=10).parameters()
    )
    assert float(rows[0]["model/params"]) == params
    assert float(rows[0]["model/flops"]) > 0
