"""One registry of every hand-built network: a name maps to a family constructor and a row of
arguments, so a variant is data (``resnet34 = ResNet(block="basic", layers=(3, 4, 6, 3))``)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from cnnzoo.models.common import stem_for
from cnnzoo.models.features import ZooNet, feature_extractor

__all__ = [
    "ModelSpec",
    "StateDict",
    "create_model",
    "get_spec",
    "model_names",
    "register",
    "same_layout",
    "specs",
]

StateDict = dict[str, Tensor]


def same_layout(state: StateDict) -> StateDict:
    """A torchvision state dict whose names are already the net's own."""
    return state


@dataclass(frozen=True)
class ModelSpec:
    """A registered variant: ``builder(**kwargs)`` builds it; ``paper`` names its source;
    ``torchvision`` maps the state dict of torchvision's model of the same name onto this net's
    (None: torchvision has none, so named weights such as ``IMAGENET1K_V1`` do not exist)."""

    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    torchvision: Callable[[StateDict], StateDict] | None = None

    @property
    def target(self) -> str:
        """The dotted path of the builder, as a Hydra ``_target_``."""
        return f"{self.builder.__module__}.{self.builder.__qualname__}"

    @property
    def paper_url(self) -> str:
        """The paper's address: a known non-arXiv venue, else its arXiv id."""
        for citation, url in _PUBLISHED.items():
            if self.paper.startswith(citation):
                return url
        match = re.search(r"arXiv:(\d{4}\.\d{4,5})", self.paper)
        return f"https://arxiv.org/abs/{match.group(1)}" if match else ""

    def accepts(self, argument: str) -> bool:
        return argument in inspect.signature(self.builder).parameters

    def build(self, **overrides: Any) -> nn.Module:
        return self.builder(**{**self.kwargs, **overrides})

    def build_for(self, input_shape: Sequence[int], num_classes: int) -> nn.Module:
        """The net as training builds it for ``C x H x W`` images: the stem ``stem_for`` picks
        for that size, and the image size for the nets that take one (the MLP)."""
        channels, size = int(input_shape[0]), int(input_shape[-1])
        extra = {
            key: value
            for key, value in (("stem", stem_for(size)), ("image_size", size))
            if self.accepts(key)
        }
        return self.build(in_channels=channels, num_classes=num_classes, **extra)


# papers first published outside arXiv, by their citation's first words
_PUBLISHED = {
    "LeCun et al. 1998": "https://doi.org/10.1109/5.726791",
    "Krizhevsky et al. 2012": "https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks",
}


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    paper: str,
    torchvision: Callable[[StateDict], StateDict] | None = None,
    **kwargs: Any,
) -> None:
    """Register ``name`` as ``builder(**kwargs)``; ``torchvision``: see ``ModelSpec``. Refuses a
    name that is already taken."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered ({_REGISTRY[name].target})")
    _REGISTRY[name] = ModelSpec(
        name=name, builder=builder, kwargs=dict(kwargs), paper=paper, torchvision=torchvision
    )


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def specs() -> Iterator[ModelSpec]:
    for name in model_names():
        yield _REGISTRY[name]


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; registered models: {', '.join(model_names())}"
        ) from None


def create_model(
    name: str,
    *,
    weights: str | None = None,
    global_pool: str | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered network, e.g. ``create_model("resnet18", num_classes=10)``.

    - ``weights``: pretrained weights to start from — a torchvision weights name
      (``"IMAGENET1K_V1"``, ``"DEFAULT"``) or a local file (see ``cnnzoo.models.weights``);
    - ``num_classes=0``: no classifier, the net returns its pooled features; ``global_pool``:
      the head's pooling (``reset_classifier``'s argument: ``avg``, ``max``, ``avgmax``,
      ``catavgmax``, or ``""`` with ``num_classes=0`` for the unpooled map), as timm's;
    - ``features_only=True``: the feature maps of the stages in ``out_indices`` (default all;
      n: the last n), as ``timm.create_model(..., features_only=True)`` (see
      ``cnnzoo.models.features``).
    """
    model = get_spec(name).build(**overrides)
    if weights is not None:
        from cnnzoo.models.weights import load_pretrained

        load_pretrained(model, name, weights)
    if global_pool is not None:
        if not isinstance(model, ZooNet):
            raise ValueError(f"{name} has no global_pool (not one of the zoo's nets)")
        model.reset_classifier(model.num_classes, global_pool)
    if features_only:
        return feature_extractor(model, out_indices)
    if out_indices is not None:
        raise ValueError("out_indices chooses the maps of features_only=True; set that as well")
    return model
