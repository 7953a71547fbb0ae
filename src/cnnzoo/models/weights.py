"""Pretrained weights: torchvision's by name, or a local file, adapted to the net being built.

``create_model("resnet18", weights="IMAGENET1K_V1", in_channels=1, num_classes=10)``, or on the
command line ``model.net.weights=IMAGENET1K_V1``. ``weights`` is either

- a weights name of the torchvision model of the same name (``IMAGENET1K_V1``, ``IMAGENET1K_V2``,
  ``DEFAULT``), fetched with torchvision's own API: downloaded once into torch hub's cache
  (``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints`` by default) and read from
  there afterwards, offline too;
- a local file: a state dict (``.pth``/``.pt``, torchvision's layout or cnnzoo's), a
  ``.safetensors`` file, or a cnnzoo checkpoint (``.ckpt``: the ``net.`` entries of its
  ``state_dict``). Files are read with ``weights_only=True``: no pickled code runs.

The hand-built nets name their layers as torchvision does (ConvNeXt through
``convnext.from_torchvision_state_dict``), so a torchvision file gives exactly torchvision's
network. Loading adapts the file to the net and says what it changed in one log line:

- input channels: the first convolution's kernel is converted as timm's ``adapt_input_conv``
  does (RGB kernels summed for 1 channel; tiled and rescaled for more);
- classes: layers shaped by the class count (the classifier; GoogLeNet's auxiliary ones) are
  left freshly initialised when the file has another count (ImageNet's 1000);
- anything else that differs is an error naming it; a stem of another shape (ImageNet weights in
  a net built with the small stem) says how to get the right one.

The configs build a net with its weights' own stem (``pick_stem``, the ``${stem_for:…}``
resolver): ImageNet weights keep their ImageNet stem on 28 px digits too, unless the command line
chooses one (``model.net.stem=small``).
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from timm.models import adapt_input_conv
from torch import Tensor, nn

from cnnzoo.errors import UserError
from cnnzoo.models.common import STEMS, stem_for
from cnnzoo.models.features import ZooNet
from cnnzoo.models.googlenet import GoogLeNet
from cnnzoo.models.registry import StateDict, get_spec, model_names, specs

__all__ = [
    "FILE_SUFFIXES",
    "fetch_torchvision_weights",
    "is_weights_file",
    "load_pretrained",
    "load_state_dict_adapted",
    "pick_stem",
    "read_weights_file",
    "torchvision_weights",
    "weights_stem",
]

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")

# torchvision's DenseNet files predate the ban on "." in module names: their dense layers hold
# "norm.1", "conv.2", ... which torchvision's builder renames to "norm1", "conv2" on loading.
_DENSENET_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _torchvision_renames(state: StateDict) -> StateDict:
    """The renaming torchvision's builders do on loading their files (DenseNet's legacy keys)."""
    return {
        (f"{m[1]}{m[2]}" if (m := _DENSENET_LEGACY_KEY.match(key)) else key): value
        for key, value in state.items()
    }


# --- where weights come from -------------------------------------------------------------------


def is_weights_file(weights: str) -> bool:
    """A path (a file suffix, a folder separator or an existing file) rather than a weights name."""
    path = Path(weights).expanduser()
    return path.suffix in FILE_SUFFIXES or "/" in weights or os.sep in weights or path.is_file()


def read_weights_file(path: str | Path) -> StateDict:
    """A state dict from a ``.pth``/``.pt``/``.bin`` state dict, a ``.safetensors`` file or a
    Lightning checkpoint (its ``state_dict``'s ``net.`` entries, the prefix removed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        # an unpickling error names what weights_only refused; RuntimeError: not a torch file
        raise ValueError(
            f"{path} could not be read as a state dict with torch.load(weights_only=True): "
            f"{str(error).splitlines()[0]}"
        ) from error
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        checkpoint = content["state_dict"]
        content = {k.removeprefix("net."): v for k, v in checkpoint.items() if k.startswith("net.")}
        if not content:
            raise ValueError(f"{path} is a checkpoint whose state_dict has no net.* entries")
    if not isinstance(content, dict) or not all(isinstance(v, Tensor) for v in content.values()):
        raise ValueError(
            f"{path} holds a {type(content).__name__}, not a state dict (a mapping of names to "
            "tensors) or a checkpoint with one under 'state_dict'"
        )
    return content


def torchvision_weights(name: str, weights: str) -> torchvision.models.WeightsEnum:
    """``torchvision.models.get_model_weights(name)[weights]``, or a ValueError listing them."""
    enum = torchvision.models.get_model_weights(name)
    if weights not in enum.__members__:
        raise ValueError(
            f"{name}: {weights!r} is not a torchvision weights name of {enum.__name__} "
            f"(choose {', '.join(enum.__members__)}) nor a weights file "
            f"({'/'.join(FILE_SUFFIXES)})"
        )
    return enum[weights]


def fetch_torchvision_weights(weights: torchvision.models.WeightsEnum) -> StateDict:
    """torchvision's state dict for ``weights``: from torch hub's cache, downloading it first
    when it is not there. Offline without the file, a UserError says where to put it."""
    try:
        state = weights.get_state_dict(
            progress=True, check_hash=True, map_location="cpu", weights_only=True
        )
    except OSError as error:  # URLError, a socket error, an HTTP error: no usable network
        filename = os.path.basename(weights.url)
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        raise UserError(
            f"could not download torchvision's {weights} ({type(error).__name__}: "
            f"{getattr(error, 'reason', error)}). Without network, copy the file {filename} "
            f"(from {weights.url}) into torch hub's cache {cache} (it follows $TORCH_HOME), or "
            "pass a local file: model.net.weights=/path/to/file.pth"
        ) from error
    return _torchvision_renames(state)


# --- loading, adapted --------------------------------------------------------------------------


def _module_names(keys: Sequence[str]) -> str:
    return ", ".join(dict.fromkeys(key.rpartition(".")[0] for key in keys))


def load_state_dict_adapted(
    model: nn.Module,
    state: StateDict,
    *,
    name: str,
    source: str,
    num_classes: int,
    first_conv: str | None,
    optional: tuple[str, ...] = (),
    notes: Sequence[str] = (),
) -> None:
    """Load ``state`` into ``model`` and log one line: what was loaded and what was adapted.

    ``first_conv``'s kernel is converted to the model's input channels; entries of another class
    count than ``num_classes`` are left out, so those layers keep their fresh initialisation.
    Keys under an ``optional`` prefix may be absent from either side. Any other difference is a
    ValueError naming the entry.
    """
    own = model.state_dict()
    state = dict(state)
    adapted: list[str] = []
    reinitialised: list[str] = []
    for key in list(state):
        if key not in own or state[key].shape == own[key].shape:
            continue
        theirs, ours = state[key].shape, own[key].shape
        if first_conv and key == f"{first_conv}.weight" and theirs[0] == ours[0]:
            try:
                state[key] = adapt_input_conv(ours[1], state[key])
            except (NotImplementedError, ValueError):
                pass  # a shape adapt_input_conv cannot convert: reported as a misfit below
            if state[key].shape == ours:
                adapted.append(f"{first_conv} adapted from {theirs[1]} to {ours[1]} input channels")
                continue
        if ours[0] == num_classes and theirs[1:] == ours[1:]:
            del state[key]
            reinitialised.append(key)
            continue
        raise ValueError(
            f"{name}: {source} does not fit the network: {key} has shape {tuple(theirs)}, "
            f"the network expects {tuple(ours)}"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in reinitialised and not k.startswith(optional)]
    unexpected = [k for k in unexpected if not k.startswith(optional)]
    if missing or unexpected:
        raise ValueError(
            f"{name}: {source} does not fit the network: missing {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' …' if len(unexpected) > 5 else ''}"
        )
    parts = [f"{name}: loaded {source}", *adapted]
    if reinitialised:
        parts.append(f"{_module_names(reinitialised)} re-initialised for {num_classes} classes")
    log.info("; ".join([*parts, *notes]))


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _check_stem(model: nn.Module, state: StateDict, name: str, source: str, key: str) -> None:
    """A stem conv of another kernel size is another stem: say how to get the weights' one."""
    if key not in state:
        return  # the key check of load_state_dict_adapted reports it
    theirs, ours = state[key].shape, model.state_dict()[key].shape
    if theirs[2:] == ours[2:]:
        return  # the same kind of stem; load_state_dict_adapted adapts or reports the rest
    shapes = f"{key}: {'x'.join(map(str, theirs))} in the weights, {'x'.join(map(str, ours))} here"
    # with weights, the configs build the weights' own stem: this one was chosen
    theirs_name = "imagenet" if theirs[-1] > ours[-1] else "small"
    raise ValueError(
        f"{name}: {source} was trained with the {_STEM_NAMES[theirs_name]} stem, but this net "
        f"was built with the {_STEM_NAMES[_other(theirs_name)]} one ({shapes}); build it with "
        f"the weights' stem: model.net.stem={theirs_name}, or leave model.net.stem unset (with "
        "weights, the configs take the weights' stem)"
    )


_STEM_NAMES = {"imagenet": "ImageNet", "small": "small"}


def _other(stem: str) -> str:
    return next(other for other in STEMS if other != stem)


# --- the stem a config builds --------------------------------------------------------------------


def weights_stem(name: str | None, weights: str) -> str | None:
    """The stem ``weights`` were trained with: ``imagenet`` for torchvision's named weights
    (ImageNet's); for a file, the stem of the registered net ``name`` whose first convolution
    has the file's kernel size. None when it cannot be told: no such net, a net without a stem
    choice, a file without that convolution (loading the weights then says what differs)."""
    if name is None or name not in model_names():
        return None
    spec = get_spec(name)
    if not is_weights_file(weights):
        return "imagenet" if spec.torchvision else None
    if not spec.accepts("stem"):
        return None
    state = _torchvision_renames(read_weights_file(weights))
    twin = spec.torchvision
    if twin is not None:
        state = twin(state)
    for stem in STEMS:
        with torch.device("meta"):  # the layers' shapes, no memory and no initialisation cost
            net = spec.build(stem=stem)
        first = _first_conv(net)
        if first is None:
            return None
        kernel = state.get(f"{first[0]}.weight")
        if kernel is not None and kernel.shape[2:] == first[1].weight.shape[2:]:
            return stem
    return None


_logged: set[str] = set()


def pick_stem(image_size: int, *, name: str | None = None, weights: str | None = None) -> str:
    """The stem a config builds when it does not choose one: with pretrained ``weights``, the
    stem they were trained with (ImageNet weights on 28 px digits keep their ImageNet stem: what
    a user who asks for them expects); otherwise ``stem_for(image_size)``. The choice made by
    the weights is logged once, with the reason."""
    by_size = stem_for(image_size)
    if weights is None:
        return by_size
    stem = _cached_weights_stem(name, str(weights), _file_stamp(str(weights)))
    if stem is None:
        return by_size
    size_rule = f" ({image_size} px images alone get the {by_size} stem)" if stem != by_size else ""
    message = (
        f"{name or 'the net'}: stem={stem}, the stem of its weights {weights}{size_rule}; "
        f"model.net.stem={_other(stem)} builds the other one"
    )
    if message not in _logged:
        _logged.add(message)
        log.info(message)
    return stem


def _file_stamp(weights: str) -> tuple[int, int] | None:
    """A file's (size, mtime): a file rewritten in place is read again."""
    try:
        stat = os.stat(Path(weights).expanduser())
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _cached_weights_stem(
    name: str | None, weights: str, stamp: tuple[int, int] | None
) -> str | None:
    # a config is resolved several times (instantiate, the loggers' hyperparameters): the file
    # is read once
    return weights_stem(name, weights)


def load_pretrained(model: nn.Module, name: str, weights: str) -> None:
    """Load ``weights`` (a torchvision weights name or a local file) into the registered net
    ``name``, adapted to its input channels and classes (see the module's docstring)."""
    twin = get_spec(name).torchvision  # how torchvision's state dict maps onto this net's
    if is_weights_file(weights):
        state = _torchvision_renames(read_weights_file(weights))
        source = str(weights)
        from_torchvision = False
    elif twin is None:
        raise ValueError(
            f"{name}: weights={weights!r} is not a file, and {name} has no torchvision "
            f"counterpart to take named weights from: give a weights file "
            f"({'/'.join(FILE_SUFFIXES)}: a state dict, safetensors or a cnnzoo checkpoint). "
            f"Named torchvision weights (IMAGENET1K_V1, DEFAULT, ...) exist for "
            f"{', '.join(spec.name for spec in specs() if spec.torchvision)}"
        )
    else:
        weights_enum = torchvision_weights(name, weights)
        state = fetch_torchvision_weights(weights_enum)
        source = f"{weights} ({weights_enum})"
        from_torchvision = True
    if twin is not None:
        state = twin(state)  # a file already in cnnzoo's layout passes unchanged

    first_conv, stem = _first_conv(model) or (None, None)
    if first_conv is not None:
        _check_stem(model, state, name, source, f"{first_conv}.weight")
    notes = []
    optional: tuple[str, ...] = ()
    if isinstance(model, GoogLeNet):
        # torchvision's pretrained auxiliary classifiers were never trained (its docs): a file
        # with or without them fits a net with or without them
        optional = ("aux1.", "aux2.")
        rgb = stem is not None and stem.in_channels == 3
        if from_torchvision and rgb and not model.transform_input:
            model.transform_input = True
            notes.append("transform_input on (torchvision's GoogLeNet weights expect it)")
    classifier = model.get_classifier() if isinstance(model, ZooNet) else None
    num_classes = classifier.out_features if isinstance(classifier, nn.Linear) else 0
    if isinstance(model, ZooNet) and not num_classes:  # built without a classifier
        optional += (f"{model.head_spec.classifier}.",)
        notes.append("its classifier left out (num_classes=0)")
    load_state_dict_adapted(
        model,
        state,
        name=name,
        source=source,
        num_classes=num_classes,
        first_conv=first_conv,
        optional=optional,
        notes=notes,
    )


# the net config keys that make a net start from pretrained weights, and their "off" value
PRETRAINED_KEYS: dict[str, Any] = {"weights": None, "pretrained": False, "checkpoint_path": None}


def without_weights(net_config: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """The config that rebuilds ``model`` — built from ``net_config`` with pretrained weights —
    with no weights to fetch: a checkpoint holds the trained weights, and reading it back must
    not download the pretrained ones (offline, or gone from the hub) only to overwrite them.
    What the weights switched on (GoogLeNet's ``transform_input``) stays on."""
    rebuilt = dict(net_config)
    # cnnzoo's and torchvision's nets: `weights`; timm's: `pretrained` and `checkpoint_path`
    for key, off in PRETRAINED_KEYS.items():
        if key in rebuilt:
            rebuilt[key] = off
    if isinstance(model, GoogLeNet) and model.transform_input:
        rebuilt["transform_input"] = True
    return rebuilt
