"""One registry of every hand-built network: a name maps to a family constructor and a row of
arguments, so a variant is data (``resnet34 = ResNet(block="basic", layers=(3, 4, 6, 3))``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["ModelSpec", "register", "get_spec", "create_model", "model_names", "specs"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered variant: ``builder(**kwargs)`` builds it; ``paper`` names its source."""

    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    paper: str = ""

    @property
    def target(self) -> str:
        """The dotted path of the builder, as a Hydra ``_target_``."""
        return f"{self.builder.__module__}.{self.builder.__qualname__}"

    def build(self, **overrides: Any) -> nn.Module:
        return self.builder(**{**self.kwargs, **overrides})


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, builder: Callable[..., nn.Module], *, paper: str, **kwargs: Any) -> None:
    """Register ``name`` as ``builder(**kwargs)``. Refuses a name that is already taken."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered ({_REGISTRY[name].target})")
    _REGISTRY[name] = ModelSpec(name=name, builder=builder, kwargs=dict(kwargs), paper=paper)


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


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered network, e.g. ``create_model("resnet18", num_classes=10)``."""
    return get_spec(name).build(**overrides)
