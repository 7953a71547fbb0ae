"""Library backbones: any timm or torchvision classifier by name, for the same training pipeline.

``model=timm model.net.name=convnext_nano`` or ``model=torchvision model.net.name=resnet50``.
Pretrained weights:

- timm: ``pretrained=true`` downloads the model's default weights through timm (the Hugging Face
  Hub, cached in ``$HF_HOME``); ``checkpoint_path`` loads a local file instead;
- torchvision: ``weights`` is a weights name of the model (``IMAGENET1K_V1``, ``DEFAULT``),
  fetched through torch hub's cache as for the hand-built nets, or a local file.

Offline without the weights in a cache, one message says where to get them and how to pass a
file. Files and fetched weights are adapted to the network being built as the hand-built nets'
(``cnnzoo.models.weights.load_state_dict_adapted``): the first convolution's kernel to the input
channels (timm's ``adapt_input_conv``: RGB kernels summed for 1 channel, tiled and rescaled for
more); a classifier of another class count (1000 ImageNet classes vs ``num_classes``) is left
freshly initialised, so the weights fine-tune on the new classes.
"""

from __future__ import annotations

import difflib
from typing import Any, cast

import timm
import torchvision
from timm.models import get_pretrained_cfg
from torch import nn

from cnnzoo.errors import UserError
from cnnzoo.models.weights import (
    fetch_torchvision_weights,
    is_weights_file,
    load_state_dict_adapted,
    read_weights_file,
    torchvision_weights,
)

__all__ = ["TRANSFORM_INPUT", "timm_backbone", "torchvision_backbone"]

# torchvision models whose weights (ported from TensorFlow) read (pixel - 0.5) / 0.5: with them
# torchvision's builders turn transform_input on, which re-scales ImageNet-normalised input
TRANSFORM_INPUT = ("googlenet", "inception_v3")


def _unknown_name(library: str, name: str, names: list[str]) -> ValueError:
    extensions = [n for n in names if n.startswith(name)]
    close = difflib.get_close_matches(name, names, n=8, cutoff=0.5)
    hint = ", ".join(list(dict.fromkeys(extensions + close))[:8]) or "none"
    return ValueError(f"unknown {library} model {name!r}; close matches: {hint}")


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
    ``checkpoint_path`` loads a local weights file; otherwise ``pretrained=True`` has timm fetch
    the model's default weights (and adapt them to the channels and classes itself).
    """
    if not timm.is_model(name):
        raise _unknown_name("timm", name, timm.list_models())
    pretrained_cfg = get_pretrained_cfg(name)
    if image_size is not None and pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs["img_size"] = image_size
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    from_hub = pretrained and checkpoint_path is None
    try:
        model = timm.create_model(
            name, pretrained=from_hub, in_chans=in_channels, num_classes=num_classes, **kwargs
        )
    except OSError as error:  # the hub's LocalEntryNotFoundError, a URLError: no network
        raise UserError(
            f"timm {name}: pretrained=true could not fetch the weights ({type(error).__name__}: "
            f"{str(error).splitlines()[0]}). Without network, download them elsewhere and pass "
            "the local file: model.net.checkpoint_path=/path/to/weights.safetensors (or a "
            ".pth/.pt state dict); set HF_HUB_OFFLINE=1 to skip the hub's retries"
        ) from error
    if checkpoint_path is not None:
        load_state_dict_adapted(
            model,
            read_weights_file(checkpoint_path),
            name=f"timm {name}",
            source=str(checkpoint_path),
            num_classes=num_classes,
            # a dict that timm sets on every model it creates
            first_conv=cast(dict[str, Any], model.pretrained_cfg).get("first_conv"),
        )
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
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)``,
    then ``weights`` loaded into it: a torchvision weights name of ``name`` (``IMAGENET1K_V1``,
    ``DEFAULT``) or a local file (see ``cnnzoo.models.weights``).

    For ``in_channels != 3`` the first ``nn.Conv2d`` that reads 3 channels (in module order:
    ``conv1`` of ResNet, ``features.0`` of VGG/AlexNet, ``features.0.0`` of ConvNeXt,
    ``conv_proj`` of ViT) is replaced by the same convolution reading ``in_channels`` (with
    PyTorch's default initialisation, or the weights' kernel adapted).
    """
    names = torchvision.models.list_models(module=torchvision.models)  # classifiers only
    if name not in names:
        raise _unknown_name("torchvision", name, names)
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    weights_enum = None
    if weights is not None and not is_weights_file(weights):
        weights_enum = torchvision_weights(name, weights)
    if weights_enum is not None and name in TRANSFORM_INPUT:
        # what torchvision's builder does with these weights; defined for RGB input only
        kwargs.setdefault("transform_input", in_channels == 3)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    first_conv, conv = _first_rgb_conv(model)
    if in_channels != 3:
        parent_name, _, attribute = first_conv.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        # a Conv2d holds 2-tuples, which torch types as tuples of any length (for any conv)
        replacement = nn.Conv2d(
            in_channels,
            conv.out_channels,
            cast(tuple[int, int], conv.kernel_size),
            stride=cast(tuple[int, int], conv.stride),
            padding=cast(str | tuple[int, int], conv.padding),
            dilation=cast(tuple[int, int], conv.dilation),
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        setattr(parent, attribute, replacement)
    if weights is not None:
        if weights_enum is not None:
            state = fetch_torchvision_weights(weights_enum)
            source = f"{weights} ({weights_enum})"
        else:
            state, source = read_weights_file(weights), str(weights)
        load_state_dict_adapted(
            model,
            state,
            name=f"torchvision {name}",
            source=source,
            num_classes=num_classes,
            first_conv=first_conv,
        )
    return model
