"""Library backbones: any timm or torchvision classifier by name, for the same training pipeline.

``model=timm model.net.name=convnext_nano`` or ``model=torchvision model.net.name=resnet50``.
Nothing here reaches a model hub (cnnzoo runs offline): pretrained weights come from a local file
(``checkpoint_path`` / ``weights_path``). Loading adapts the file to the network being built:

- input channels: when the file's first convolution has another number of input channels (RGB
  weights for 1-channel MNIST), its kernel is converted with timm's ``adapt_input_conv`` (summed
  over RGB for 1 channel, tiled and rescaled for more);
- classes: a classifier whose shape differs (1000 ImageNet classes vs ``num_classes``) is left
  freshly initialised, so the file fine-tunes on the new classes.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from timm.models import adapt_input_conv, get_pretrained_cfg, load_state_dict
from torch import nn

__all__ = ["timm_backbone", "torchvision_backbone"]

NO_HUB = (
    "there is no model-hub access (cnnzoo runs offline); download the weights elsewhere and pass "
    "the local file as model.net.{key}=/path/to/weights.pth (a state_dict, .pth/.pt/.safetensors)"
)


def _unknown_name(library: str, name: str, names: list[str]) -> ValueError:
    extensions = [n for n in names if n.startswith(name)]
    close = difflib.get_close_matches(name, names, n=8, cutoff=0.5)
    hint = ", ".join(list(dict.fromkeys(extensions + close))[:8]) or "none"
    return ValueError(f"unknown {library} model {name!r}; close matches: {hint}")


def _check_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    return path


def _load_adapted(
    model: nn.Module, state: dict[str, torch.Tensor], *, first_conv: str, num_classes: int
) -> None:
    """Load ``state`` into ``model``, adapting the first conv's input channels and dropping a
    classifier of another class count (it stays freshly initialised)."""
    own = model.state_dict()
    for key in list(state):
        if key not in own or state[key].shape == own[key].shape:
            continue
        if key == f"{first_conv}.weight":
            state[key] = adapt_input_conv(own[key].shape[1], state[key])
        elif own[key].shape[0] == num_classes:
            del state[key]
        else:
            raise ValueError(
                f"weights file does not fit the network: {key} has shape "
                f"{tuple(state[key].shape)}, the network expects {tuple(own[key].shape)}"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    # only classifier entries may be missing: the ones just dropped
    missing = [key for key in missing if own[key].shape[0] != num_classes]
    if missing or unexpected:
        raise ValueError(
            "weights file does not fit the network: "
            f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )


def timm_backbone(
    *,
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: int | None = None,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """``timm.create_model(name, in_chans=in_channels, num_classes=num_classes, **kwargs)``.

    ``image_size`` is passed on as ``img_size`` to the models built for one input size (ViT,
    Swin, …: timm marks them ``fixed_input_size``) and ignored by the others. ``kwargs`` set to
    ``None`` are left out, so a config can declare ``drop_path_rate: null`` for every model.
    ``pretrained=True`` needs ``checkpoint_path``: a local weights file.
    """
    if not timm.is_model(name):
        raise _unknown_name("timm", name, timm.list_models())
    if pretrained and checkpoint_path is None:
        raise ValueError(
            f"timm {name}: pretrained=true, but {NO_HUB.format(key='checkpoint_path')}"
        )
    pretrained_cfg = get_pretrained_cfg(name)
    if image_size is not None and pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs["img_size"] = image_size
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    model = timm.create_model(name, in_chans=in_channels, num_classes=num_classes, **kwargs)
    if checkpoint_path is not None:
        state = load_state_dict(str(_check_file(checkpoint_path)))
        first_conv = model.pretrained_cfg.get("first_conv") or ""
        _load_adapted(model, state, first_conv=first_conv, num_classes=num_classes)
    return model


def _first_rgb_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            return module_name, module
    raise ValueError(f"{type(model).__name__} has no 3-channel input convolution to replace")


def torchvision_backbone(
    *,
    name: str,
    in_channels: int,
    num_classes: int,
    weights_path: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)``.

    For ``in_channels != 3`` the first ``nn.Conv2d`` that reads 3 channels (in module order:
    ``conv1`` of ResNet, ``features.0`` of VGG/AlexNet, ``features.0.0`` of ConvNeXt,
    ``conv_proj`` of ViT) is replaced by the same convolution reading ``in_channels`` (with
    PyTorch's default initialisation).
    ``weights_path`` loads a local state_dict (torchvision's own files included).
    """
    names = torchvision.models.list_models(module=torchvision.models)  # classifiers only
    if name not in names:
        raise _unknown_name("torchvision", name, names)
    if kwargs.get("weights") is not None:
        raise ValueError(f"torchvision {name}: {NO_HUB.format(key='weights_path')}")
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    first_conv, conv = _first_rgb_conv(model)
    if in_channels != 3:
        parent_name, _, attribute = first_conv.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        replacement = nn.Conv2d(
            in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        setattr(parent, attribute, replacement)
    if weights_path is not None:
        state = torch.load(_check_file(weights_path), map_location="cpu", weights_only=True)
        _load_adapted(model, state, first_conv=first_conv, num_classes=num_classes)
    return model
