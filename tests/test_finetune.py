"""Fine-tuning pretrained weights: a lower learning rate for the pretrained backbone than for the
new classifier (`param_groups(..., backbone_lr_scale=...)`), the CIFAR-10 ResNet-18 recipe, and
the stem a net with weights gets: theirs, unless the command line chooses one."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import compose_config
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch import nn

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.models import create_model
from cnnzoo.models.backbones import timm_backbone
from cnnzoo.models.weights import weights_stem
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


def test_googlenets_auxiliary_classifiers_keep_the_lr_as_its_classifier_does() -> None:
    """A new class count makes GoogLeNet's auxiliary classifiers' last layers anew, as its fc:
    they learn at the full lr; the auxiliary heads' pretrained convolutions are backbone."""
    ours = create_model("googlenet", num_classes=10)
    theirs = torchvision.models.googlenet(num_classes=10, aux_logits=True, init_weights=False)
    inception = torchvision.models.inception_v3(num_classes=10, aux_logits=True, init_weights=False)
    for net, heads in [
        (ours, [ours.fc, ours.aux1.fc2, ours.aux2.fc2]),
        (theirs, [theirs.fc, theirs.aux1.fc2, theirs.aux2.fc2]),
        (inception, [inception.fc, inception.AuxLogits.fc]),
    ]:
        _, head = param_groups(net, exclude_norm_and_bias=False, backbone_lr_scale=0.1, lr=1.0)
        assert ids(head["params"]) == ids([p for layer in heads for p in layer.parameters()])


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


def test_the_recipe_builds_torchvisions_resnet18_with_its_weights_and_a_new_fc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a stand-in for IMAGENET1K_V1 in a temporary torch hub cache: nothing is downloaded
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    imagenet = torchvision.models.resnet18().state_dict()
    torch.save(imagenet, cached)

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", ["experiment=cifar10_resnet18_finetune", "paths.output_dir=/tmp"])
    assert cfg.data.image_size == 224 and cfg.model.net.stem == "imagenet"
    assert cfg.model.backbone_lr_scale == 0.1 and cfg.model.net.weights == "IMAGENET1K_V1"
    net = instantiate(cfg.model.net)

    state = net.state_dict()
    assert state.keys() == imagenet.keys()
    assert all(torch.equal(state[k], imagenet[k]) for k in state if not k.startswith("fc."))
    assert state["fc.weight"].shape == (10, 512)  # a new classifier for CIFAR-10's classes
    groups = param_groups(
        net,
        exclude_norm_and_bias=True,
        backbone_lr_scale=cfg.model.backbone_lr_scale,
        lr=cfg.model.optimizer.lr,
    )
    assert [g.get("lr") for g in groups] == pytest.approx([0.005, 0.005, None, None])


def test_a_fine_tuned_checkpoint_loads_offline_without_the_pretrained_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cnnzoo.checkpoint import load_classifier
    from cnnzoo.module import ImageClassifier

    source = tmp_path / "lenet.pth"
    torch.save(create_model("lenet", in_channels=1, num_classes=10).state_dict(), source)
    model = ImageClassifier(
        net={"_target_": "cnnzoo.models.create_model", "name": "lenet", "weights": str(source)},
        num_classes=10,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
    ).eval()
    assert model.hparams.net["weights"] is None  # the checkpoint holds the weights from now on
    ckpt = tmp_path / "fine_tuned.ckpt"
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, ckpt)
    source.unlink()  # the pretrained file is gone, as on another machine
    loaded = load_classifier(ckpt)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def resnet18_file(tmp_path: Path, *, stem: str) -> Path:
    """A saved state dict of ResNet-18 with ``stem``: torchvision's layout for the ImageNet stem
    (a stand-in for its ImageNet file), cnnzoo's small-stem net for the other."""
    if stem == "imagenet":
        state = torchvision.models.resnet18().state_dict()
    else:
        state = create_model("resnet18", stem="small", num_classes=10).state_dict()
    path = tmp_path / f"resnet18_{stem}.pth"
    torch.save(state, path)
    return path


def test_imagenet_weights_keep_their_stem_on_28px_digits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights = resnet18_file(tmp_path, stem="imagenet")
    cfg = compose_config("model=resnet18", f"model.net.weights={weights}")  # 28 px, 1 channel
    with caplog.at_level(logging.INFO, logger="cnnzoo.models.weights"):
        assert cfg.model.net.stem == "imagenet"
        net = instantiate(cfg.model.net)
    assert (
        f"resnet18: stem=imagenet, the stem of its weights {weights} (28 px images alone get the "
        "small stem); model.net.stem=small builds the other one"
    ) in caplog.messages
    # the file's weights, its RGB stem summed for grey digits, which the net takes
    loaded = torch.load(weights, weights_only=True)
    assert torch.equal(net.conv1.weight, loaded["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(net.layer4[1].conv2.weight, loaded["layer4.1.conv2.weight"])
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_named_imagenet_weights_keep_their_stem_without_reading_a_file() -> None:
    cfg = compose_config("model=resnet18", "model.net.weights=IMAGENET1K_V1")
    assert cfg.model.net.stem == "imagenet"  # torchvision's weights are ImageNet's: no download


def test_small_stem_weights_keep_their_stem_on_larger_images(tmp_path: Path) -> None:
    weights = resnet18_file(tmp_path, stem="small")
    cfg = compose_config("model=resnet18", "data.image_size=96", f"model.net.weights={weights}")
    assert cfg.model.net.stem == "small"  # 96 px alone would get the ImageNet stem
    assert compose_config("model=resnet18", "data.image_size=96").model.net.stem == "imagenet"


def test_a_stem_chosen_on_the_command_line_is_kept_and_a_misfit_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    weights = resnet18_file(tmp_path, stem="imagenet")
    cfg = compose_config("model=resnet18", "model.net.stem=small", f"model.net.weights={weights}")
    assert cfg.model.net.stem == "small"
    with pytest.raises(Exception, match="trained with the ImageNet stem") as error:
        instantiate(cfg.model.net)
    assert "model.net.stem=imagenet, or leave model.net.stem unset" in str(error.value)


@pytest.mark.parametrize(
    "name", ["resnet18", "alexnet", "googlenet", "densenet121", "convnext_tiny", "preact_resnet18"]
)
@pytest.mark.parametrize("stem", ["imagenet", "small"])
def test_a_weights_file_tells_its_stem_in_every_family(
    name: str, stem: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{name}.pth"
    torch.save(create_model(name, stem=stem).state_dict(), path)
    assert weights_stem(name, str(path)) == stem
