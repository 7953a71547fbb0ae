"""Pretrained weights for the hand-built nets (`create_model(name, weights=...)`): torchvision's by
name through torch hub's cache, or a local file; the net then computes what torchvision's net with
the same weights computes, and adapts to other input channels and classes.

No test touches the network: torchvision's "downloads" are state dicts written into a temporary
torch hub cache (TORCH_HOME) under the file name torchvision asks for.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from cnnzoo.errors import UserError
from cnnzoo.models import create_model, specs
from cnnzoo.models.convnext import from_torchvision_state_dict

StateDict = dict[str, torch.Tensor]

# the registered nets that torchvision has too, under the same name
TORCHVISION_TWINS = [
    "alexnet", "convnext_base", "convnext_small", "convnext_tiny", "densenet121", "densenet169",
    "densenet201", "googlenet", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
    "wide_resnet50_2",
]  # fmt: skip


def torchvision_net(name: str, **kwargs) -> torch.nn.Module:
    if name == "googlenet":
        kwargs["init_weights"] = True  # the current init, without torchvision's FutureWarning
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def fake_imagenet_weights(name: str) -> StateDict:
    """A randomly initialised torchvision net's state dict, standing in for its ImageNet file."""
    state = torchvision_net(name).state_dict()
    for key, value in state.items():
        if key.endswith("layer_scale"):  # ConvNeXt's 1e-6 init would hide a wrong block
            value.normal_(std=0.1)
    return state


def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, state: StateDict,
          weights: str = "IMAGENET1K_V1") -> Path:  # fmt: skip
    """Write ``state`` where torchvision's ``weights`` of ``name`` are looked up offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.get_model_weights(name)[weights].url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A download attempt fails at once, as offline (a missing cache file, say, in a test)."""

    def offline(url: str, *args, **kwargs) -> None:
        raise URLError("offline in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


def legacy_densenet_keys(state: StateDict) -> StateDict:
    """A DenseNet state dict as torchvision's 2017 files hold it: ``norm.1`` for ``norm1``, and
    no ``num_batches_tracked`` (BatchNorm counts batches since PyTorch 0.4)."""
    pattern = re.compile(r"(denselayer\d+\.(?:norm|conv))([12])\.")
    return {
        pattern.sub(r"\1.\2.", key): value
        for key, value in state.items()
        if not key.endswith("num_batches_tracked")
    }


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "alexnet",
        "googlenet",
        "densenet121",
        "convnext_tiny",
        *(
            pytest.param(name, marks=pytest.mark.slow)
            for name in (
                "resnet34",
                "resnet50",
                "resnet101",
                "resnet152",
                "wide_resnet50_2",
                "densenet169",
                "densenet201",
                "convnext_small",
                "convnext_base",
            )
        ),  # fmt: skip
    ],
)
def test_named_weights_give_torchvisions_net(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = fake_imagenet_weights(name)
    file_state = legacy_densenet_keys(state) if name.startswith("densenet") else state
    cache(monkeypatch, tmp_path, name, file_state)

    ours = create_model(name, weights="IMAGENET1K_V1").eval()
    # torchvision's GoogLeNet with its weights re-normalises the input (transform_input)
    theirs = torchvision_net(name, **({"transform_input": True} if name == "googlenet" else {}))
    theirs.load_state_dict(state)
    # 96 px: any size the ImageNet stems take checks the weights; test_models_<family> compares
    # the layouts at 224
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    if name.startswith("convnext"):  # our mean over the map vs its AdaptiveAvgPool2d: 1 ulp
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)
    else:
        assert torch.equal(actual, expected)


def test_googlenet_from_torchvision_turns_transform_input_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache(monkeypatch, tmp_path, "googlenet", fake_imagenet_weights("googlenet"))
    assert not create_model("googlenet").transform_input
    with caplog.at_level(logging.INFO, logger="cnnzoo.models.weights"):
        model = create_model("googlenet", weights="IMAGENET1K_V1", num_classes=10)
    assert model.transform_input
    # torchvision's auxiliary classifiers were never trained: they are re-initialised as well
    (message,) = caplog.messages
    assert message == (
        "googlenet: loaded IMAGENET1K_V1 (GoogLeNet_Weights.IMAGENET1K_V1); aux1.fc2, aux2.fc2, "
        "fc re-initialised for 10 classes; transform_input on (torchvision's GoogLeNet weights "
        "expect it)"
    )
    # a net without them takes the same file
    assert create_model("googlenet", weights="IMAGENET1K_V1", aux_logits=False).aux1 is None


def test_other_channels_and_classes_adapt_the_stem_and_reinitialise_the_head(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = fake_imagenet_weights("resnet18")
    cache(monkeypatch, tmp_path, "resnet18", state)
    torch.manual_seed(7)
    fresh = create_model("resnet18", in_channels=1, num_classes=10)
    torch.manual_seed(7)
    with caplog.at_level(logging.INFO, logger="cnnzoo.models.weights"):
        model = create_model("resnet18", weights="DEFAULT", in_channels=1, num_classes=10)

    # RGB kernels summed into one grey channel (timm's adapt_input_conv); the body as the file
    assert torch.equal(model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    # the head is the one a fresh 10-class net draws
    assert torch.equal(model.fc.weight, fresh.fc.weight) and model.fc.weight.shape == (10, 512)
    assert caplog.messages == [
        "resnet18: loaded DEFAULT (ResNet18_Weights.IMAGENET1K_V1); conv1 adapted from 3 to 1 "
        "input channels; fc re-initialised for 10 classes"
    ]


def test_three_channel_weights_tile_for_more_channels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = fake_imagenet_weights("resnet18")
    cache(monkeypatch, tmp_path, "resnet18", state)
    model = create_model("resnet18", weights="IMAGENET1K_V1", in_channels=4)
    rgb = state["conv1.weight"]
    torch.testing.assert_close(model.conv1.weight[:, :3], rgb * 3 / 4)
    torch.testing.assert_close(model.conv1.weight[:, 3], rgb[:, 0] * 3 / 4)


@pytest.mark.parametrize(("name", "stem_key"), [("resnet18", "conv1"), ("googlenet", "conv1")])
def test_imagenet_weights_in_a_small_stem_net_say_how_to_fix_it(
    name: str, stem_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache(monkeypatch, tmp_path, name, fake_imagenet_weights(name))
    # a stem chosen by hand (the configs take the weights' own: tests/test_finetune.py)
    with pytest.raises(
        ValueError, match="ImageNet stem, but this net was built with the small"
    ) as error:
        create_model(name, weights="IMAGENET1K_V1", stem="small", num_classes=10)
    assert "model.net.stem=imagenet, or leave model.net.stem unset" in str(error.value)


def test_small_stem_weights_in_an_imagenet_stem_net_say_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "resnet18_small.pth"
    torch.save(create_model("resnet18", stem="small").state_dict(), path)
    with pytest.raises(
        ValueError, match="small stem, but this net was built with the ImageNet"
    ) as error:
        create_model("resnet18", weights=str(path), stem="imagenet")
    assert "model.net.stem=small, or leave model.net.stem unset" in str(error.value)


def test_offline_without_the_cached_file_names_the_file_the_cache_and_the_alternative(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(UserError) as error:
        create_model("resnet50", weights="IMAGENET1K_V2")
    message = str(error.value)
    assert "resnet50-11ad3fa6.pth" in message  # the file torchvision asks for
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in message
    assert "model.net.weights=/path/to/file.pth" in message


@pytest.mark.parametrize("name", ["resnet20", "wrn28_10", "densenet_bc100", "preact_resnet18",
                                  "lenet", "mlp"])  # fmt: skip
def test_nets_without_a_torchvision_twin_take_files_only(name: str) -> None:
    with pytest.raises(ValueError, match="no torchvision counterpart") as error:
        create_model(name, weights="IMAGENET1K_V1")
    assert ", ".join(TORCHVISION_TWINS) in str(error.value)


def test_the_registry_says_which_nets_torchvision_has_too() -> None:
    # one place for the fact: the registration, whose `torchvision` maps the state dict
    assert [spec.name for spec in specs() if spec.torchvision] == TORCHVISION_TWINS
    assert set(TORCHVISION_TWINS) <= set(torchvision.models.list_models(module=torchvision.models))


def test_an_unknown_weights_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="choose IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT"):
        create_model("resnet50", weights="IMAGENET1K_V3")


def test_local_files_in_every_format_load_the_same_weights(tmp_path: Path) -> None:
    source = create_model("resnet20", num_classes=10).eval()
    state = source.state_dict()
    torch.save(state, tmp_path / "resnet20.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "resnet20.safetensors"))
    # a cnnzoo Lightning checkpoint: the net's entries under "net.", beside other state
    checkpoint = {
        "state_dict": {**{f"net.{k}": v for k, v in state.items()}, "val_acc_best": torch.ones(())},
        "epoch": 3,
    }
    torch.save(checkpoint, tmp_path / "best.ckpt")

    x = torch.randn(2, 3, 32, 32)
    for file in ("resnet20.pth", "resnet20.safetensors", "best.ckpt"):
        loaded = create_model("resnet20", num_classes=10, weights=str(tmp_path / file)).eval()
        assert torch.equal(loaded(x), source(x)), file


@pytest.mark.parametrize("name", ["resnet20", "googlenet", "alexnet", "lenet"])
def test_weights_into_a_net_without_classifier_leave_the_files_out(
    name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # timm.create_model(name, pretrained=True, num_classes=0): the trunk's weights, no classifier
    stem = {"stem": "small"} if name != "lenet" else {}
    source = create_model(name, num_classes=10, **stem).eval()
    torch.save(source.state_dict(), tmp_path / "net.pth")
    with caplog.at_level(logging.INFO, logger="cnnzoo.models.weights"):
        net = create_model(name, num_classes=0, weights=str(tmp_path / "net.pth"), **stem).eval()
    assert "its classifier left out (num_classes=0)" in caplog.text
    x = torch.randn(2, 3 if name != "lenet" else 1, 32, 32)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(x), pre_logits=True)
        assert torch.equal(net(x), expected)


def test_a_torchvision_convnext_file_is_renamed_to_our_layout(tmp_path: Path) -> None:
    state = fake_imagenet_weights("convnext_tiny")
    torch.save(state, tmp_path / "convnext_tiny.pth")
    model = create_model("convnext_tiny", weights=str(tmp_path / "convnext_tiny.pth"))
    expected = from_torchvision_state_dict(state)
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())


def test_a_file_for_another_net_names_what_does_not_fit(tmp_path: Path) -> None:
    torch.save(create_model("resnet32", num_classes=10).state_dict(), tmp_path / "resnet32.pth")
    with pytest.raises(ValueError, match="does not fit the network: missing .*unexpected"):
        create_model("resnet20", num_classes=10, weights=str(tmp_path / "resnet32.pth"))
    torch.save(create_model("resnet20", num_classes=10, widths=(8, 16, 32)).state_dict(),
               tmp_path / "narrow.pth")  # fmt: skip
    with pytest.raises(ValueError, match=r"conv1.weight has shape \(8, 3, 3, 3\)"):
        create_model("resnet20", num_classes=10, weights=str(tmp_path / "narrow.pth"))


def test_files_are_read_without_running_pickled_code(tmp_path: Path) -> None:
    torch.save(create_model("lenet"), tmp_path / "module.pth")  # a whole module: refused
    with pytest.raises(ValueError, match="weights_only=True"):
        create_model("lenet", weights=str(tmp_path / "module.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_model("lenet", weights=str(tmp_path / "missing.pth"))
