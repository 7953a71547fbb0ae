"""Fine-tuning pretrained weights: a lower learning rate for the pretrained backbone than for the
new classifier (`param_groups(..., backbone_lr_scale=...)`), and the CIFAR-10 ResNet-18 recipe."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnzoo.models import create_model
from cnnzoo.models.backbones import timm_backbone
from cnnzoo.optim import param_groups, warmup_cosine


def ids(params: list[nn.Parameter]) -> set[int]:
    return {id(p) for p in params}


def test_the_classifier_keeps_the_lr_and_the_backbone_gets_a_scaled_one() -> None:
    net = create_model("resnet20", num_classes=10)
    backbone, head = param_groups(net, exclude_norm_and_bias=False, backbone_lr_scale=0.1, lr=0.05)
    assert ids(head["params"]) == ids(list(net.fc.parameters())) and "lr" not in head
    assert backbone["lr"] == pytest.approx(0.005)
    assert len(backbone["params"]) + 2 == len(list(net.parameters()))

    optimizer = torch.optim.SGD([backbone, head], lr=0.05, momentum=0.9)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.005, 0.05])
    # a per-group schedule keeps the ratio all the way
    scheduler = warmup_cosine(optimizer, total_steps=10, warmup_steps=2)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        low, high = (g["lr"] for g in optimizer.param_groups)
        assert low == pytest.approx(0.1 * high)


def test_with_norm_and_bias_excluded_there_are_four_groups() -> None:
    net = create_model("lenet", num_classes=10)
    groups = param_groups(net, exclude_norm_and_bias=True, backbone_lr_scale=0.1, lr=1.0)
    assert [(g.get("lr"), g.get("weight_decay")) for g in groups] == [
        (0.1, None), (0.1, 0.0), (None, None), (None, 0.0)
    ]  # fmt: skip
    head = net.get_classifier()
    assert ids(groups[2]["params"]) == {id(head.weight)}
    assert ids(groups[3]["params"]) == {id(head.bias)}
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


def test_library_nets_split_at_their_classifier() -> None:
    timm_net = timm_backbone(name="resnet18", in_channels=3, num_classes=10)
    _, head = param_groups(timm_net, exclude_norm_and_bias=False, backbone_lr_scale=0.1, lr=1.0)
    assert ids(head["params"]) == ids(list(timm_net.get_classifier().parameters()))
    # torchvision's nets have no get_classifier: the last Linear is the classifier
    vgg = torchvision.models.vgg11(num_classes=10)
    _, head = param_groups(vgg, exclude_norm_and_bias=False, backbone_lr_scale=0.1, lr=1.0)
    assert ids(head["params"]) == ids(list(vgg.classifier[-1].parameters()))


def test_without_a_scale_the_groups_are_unchanged_and_a_scale_needs_the_base_lr() -> None:
    net = create_model("lenet", num_classes=10)
    assert [len(g["params"]) for g in param_groups(net, exclude_norm_and_bias=False)] == [10]
    with pytest.raises(ValueError, match="lr=..."):
        param_groups(net, exclude_norm_and_bias=False, backbone_lr_scale=0.1)
    with pytest.raises(ValueError, match="positive"):
        param_groups(net, exclude_norm_and_bias=False, backbone_lr_scale=0.0, lr=1.0)
    squeezenet = torchvision.models.squeezenet1_0(num_classes=10)  # a conv classifier
    with pytest.raises(ValueError, match="no get_classifier"):
        param_groups(squeezenet, exclude_norm_and_bias=False, backbone_lr_scale=0.1, lr=1.0)
