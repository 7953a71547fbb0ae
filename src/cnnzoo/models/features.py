"""timm's model API for every hand-built net, in one place: the base class ``ZooNet``.

A family describes its net as data — its feature stages (the modules each one runs, its channels
and its stride to the input) and where its head's pooling and classifier live — and ``ZooNet``
gives it timm's model API with timm's semantics (``timm/models/resnet.py``, ``_features.py``):

- ``forward_features(x)``: the unpooled last feature map, ``N x num_features x H x W``;
- ``forward_head(x, pre_logits=False)``: pooling, the layers before the classifier, the
  classifier; ``pre_logits=True`` stops before the classifier (``N x head_hidden_size``);
- ``get_classifier()``; ``reset_classifier(num_classes, global_pool=None)``: ``num_classes=0``
  makes the classifier an identity, so ``forward`` returns the pooled features; ``global_pool``
  switches the pooling (``avg``, ``max``, ``avgmax``, ``catavgmax``), and ``""`` (with no
  classes) removes the head: ``forward`` then returns the feature map;
- ``feature_info``: one dict per stage, ``num_chs``, ``reduction`` (the stage's stride to the
  input) and ``module`` (the module whose output it is), as timm's ``FeatureInfo`` reads them;
- ``forward_intermediates(x, indices=…, norm=…, stop_early=…, output_fmt="NCHW",
  intermediates_only=…)`` and ``prune_intermediate_layers(indices, …)``;

and ``feature_extractor(net, out_indices)`` — what ``create_model(name, features_only=True)``
returns — is timm's ``FeatureGetterNet``: its forward returns the chosen stages' maps.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from timm.layers import SelectAdaptivePool2d

# Private timm modules, but the helpers timm's own models use; tests/test_models_api.py runs
# them on every net and fails the day they change.
from timm.models._features import FeatureGetterNet, feature_take_indices
from torch import Tensor, nn

__all__ = [
    "POOL_TYPES",
    "FeatureStage",
    "HeadSpec",
    "ZooNet",
    "feature_extractor",
    "global_pool_layer",
    "linear_classifier",
]

# timm's global pools (SelectAdaptivePool2d); "catavgmax" concatenates both, doubling the width
POOL_TYPES = ("avg", "max", "avgmax", "catavgmax")


@dataclass(frozen=True)
class FeatureStage:
    """One feature stage: the modules (attribute paths, or a method's name) that turn the previous
    stage's map into this one's ``num_chs`` channels at 1 / ``reduction`` of the input's size."""

    modules: tuple[str, ...]
    num_chs: int
    reduction: int


@dataclass(frozen=True)
class HeadSpec:
    """Where a family's head lives, as attribute paths: ``pool`` (None: the net has no map to pool,
    the MLP), the ``pre_logits`` layers between pooling and the ``classifier``, and the
    ``pool_types`` the pooling can switch to (none for nets that pool to a fixed grid for their
    fully connected layers: AlexNet, LeNet — timm's "early pool" nets such as VGG)."""

    classifier: str
    pool: str | None = "global_pool"
    pre_logits: tuple[str, ...] = ()
    pool_types: tuple[str, ...] = POOL_TYPES

    @property
    def before_classifier(self) -> tuple[str, ...]:
        return (self.pool, *self.pre_logits) if self.pool is not None else self.pre_logits


def global_pool_layer(pool_type: str = "avg") -> SelectAdaptivePool2d:
    """timm's global pooling to ``N x C`` (``N x 2C`` for ``catavgmax``)."""
    return SelectAdaptivePool2d(pool_type=pool_type, flatten=True)


def linear_classifier(in_features: int, num_classes: int) -> nn.Module:
    """A linear classifier, or for ``num_classes=0`` an identity (timm's "no classifier")."""
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()


class ZooNet(nn.Module):
    """A hand-built net with timm's model API (see the module's docstring).

    A subclass sets ``head_spec`` (a class attribute), and in ``__init__`` ``num_classes``,
    ``num_features`` (the last map's channels), ``head_hidden_size`` (the pre-logits width) and
    calls ``set_stages``. A family whose stages live in one container (torchvision's
    ``features``) runs it whole in ``forward_features``, as timm's DenseNet and VGG do, so that
    hooks on the container fire (likewise a ``classifier`` container in ``forward_head``); the
    stages then only cut it for ``forward_intermediates``, and a test checks both agree.
    """

    head_spec: ClassVar[HeadSpec]
    num_classes: int
    num_features: int
    head_hidden_size: int
    feature_info: list[dict[str, Any]]

    def set_stages(self, stages: Sequence[FeatureStage], tail: Sequence[str] = ()) -> None:
        """The trunk ``forward_features`` runs: ``stages`` in order, then ``tail`` — the modules
        after the last stage (a final norm, applied to the last intermediate only with
        ``norm=True``, as timm's; the whole trunk for the MLP, which has no feature maps)."""
        self._stages = tuple(stages)
        self._tail = tuple(tail)
        self.feature_info = [
            dict(num_chs=s.num_chs, reduction=s.reduction, module=s.modules[-1]) for s in stages
        ]

    # --- the trunk -------------------------------------------------------------------------

    def _part(self, path: str) -> Any:
        """The module (or method) at ``path``: from the modules' registries, which is ~8x faster
        than ``getattr`` through ``nn.Module.__getattr__`` (about 25 us a forward for LeNet)."""
        part: Any = self
        for name in path.split("."):
            modules = part._modules
            part = modules[name] if name in modules else getattr(part, name)
        return part

    def _replace(self, path: str, module: nn.Module) -> None:
        """Put ``module`` at ``path``, on the net's device and dtype and in its mode."""
        parent, _, name = path.rpartition(".")
        reference = next(self.parameters(), None)
        if reference is not None:
            module = module.to(device=reference.device, dtype=reference.dtype)
        setattr(self._part(parent) if parent else self, name, module.train(self.training))

    def _run(
        self, parts: Sequence[str], x: Tensor, keep: dict[str, Tensor] | None = None
    ) -> Tensor:
        for path in parts:
            x = self._part(path)(x)
            if keep is not None and path in keep:
                keep[path] = x
        return x

    def _features(self, x: Tensor, keep: Collection[str] = ()) -> tuple[Tensor, dict[str, Tensor]]:
        """The last feature map, and the outputs of the trunk modules named in ``keep``."""
        kept = dict.fromkeys(keep, x)
        for stage in self._stages:
            x = self._run(stage.modules, x, kept)
        return self._run(self._tail, x, kept), kept

    def forward_features(self, x: Tensor) -> Tensor:
        return self._features(x)[0]

    # --- the head --------------------------------------------------------------------------

    def get_classifier(self) -> nn.Module:
        return self._part(self.head_spec.classifier)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self._run(self.head_spec.before_classifier, x)  # N x head_hidden_size
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for ``num_classes`` (0: none, ``forward`` returns the pooled
        features), freshly initialised as timm's; ``global_pool`` switches the pooling, and
        ``""`` (only with ``num_classes=0``) removes the pooling and the layers before the
        classifier, so ``forward`` returns the feature map."""
        name, head = type(self).__name__, self.head_spec
        if global_pool is not None:
            if head.pool is None:
                raise ValueError(f"{name} has no feature map to pool: global_pool must stay None")
            if global_pool == "":
                if num_classes:
                    raise ValueError(
                        "global_pool='' leaves the feature map unpooled, which takes no "
                        f"classifier: use it with num_classes=0 (got {num_classes})"
                    )
                for path in head.before_classifier:
                    self._replace(path, nn.Identity())
                self.head_hidden_size = self.num_features
            elif global_pool in head.pool_types:
                pool = global_pool_layer(global_pool)
                self._replace(head.pool, pool)
                self.head_hidden_size = self.num_features * pool.feat_mult()
            else:
                allowed = (
                    f"one of: {', '.join(head.pool_types)}"
                    if head.pool_types
                    else f"changeable: {name} pools to a fixed grid for its fully connected layers"
                )
                raise ValueError(
                    f"global_pool={global_pool!r} is not {allowed}; '' removes the head"
                )
        elif (
            num_classes and head.pool is not None and isinstance(self._part(head.pool), nn.Identity)
        ):
            raise ValueError(
                f"{name}'s head was removed (global_pool=''): a classifier needs pooling again, "
                f"e.g. reset_classifier({num_classes}, global_pool='avg')"
            )
        self.num_classes = num_classes
        self._replace(head.classifier, linear_classifier(self.head_hidden_size, num_classes))

    # --- intermediate feature maps -------------------------------------------------------

    def _take_indices(self, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
        """timm's ``feature_take_indices``: None -> every stage, n -> the last n, a sequence ->
        those stages (negative from the end); a ``ValueError`` naming the stages otherwise."""
        name, count = type(self).__name__, len(self._stages)
        if not count:
            raise ValueError(
                f"{name} has no feature maps (it flattens the image first): no feature_info, "
                "forward_intermediates or features_only; forward_features gives its hidden features"
            )
        if isinstance(indices, Sequence):
            indices = [int(i) for i in indices]
        try:
            take, max_index = feature_take_indices(count, indices)
        except AssertionError as error:  # timm checks with assert
            raise ValueError(
                f"{name} has {count} feature stages (0 to {count - 1}): {error}"
            ) from None
        return list(take), max_index

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The maps of the stages in ``indices`` (None: all; n: the last n; or a sequence), and,
        unless ``intermediates_only``, the final features (``forward_features``' output; with
        ``stop_early`` the last map computed). ``norm`` applies the final norm (PreAct ResNet's
        BN-ReLU) to the last stage's map; ``stop_early`` skips the stages after the last index."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: the zoo's nets give NCHW maps only")
        take, max_index = self._take_indices(indices)
        last = len(self._stages) - 1
        intermediates = []
        for i, stage in enumerate(self._stages[: max_index + 1] if stop_early else self._stages):
            x = self._run(stage.modules, x)
            if i in take:
                intermediates.append(self._run(self._tail, x) if norm and i == last else x)
        if intermediates_only:
            return intermediates
        if not stop_early or max_index == last:
            x = self._run(self._tail, x)
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | Sequence[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop what the stages in ``indices`` do not need (as timm's): the later stages, the
        final norm (with ``prune_norm`` or when the last stage goes) and the head (with
        ``prune_head`` or when the last stage goes: ``forward`` then returns the last kept
        map). Returns the kept indices, counted from the first stage."""
        take, max_index = self._take_indices(indices)
        prune_end = max_index < len(self._stages) - 1
        for stage in self._stages[max_index + 1 :]:
            for path in stage.modules:
                self._replace(path, nn.Identity())
        if prune_norm or prune_end:
            for path in self._tail:
                self._replace(path, nn.Identity())
        if prune_end:
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take


def feature_extractor(
    net: nn.Module, out_indices: int | Sequence[int] | None = None
) -> FeatureGetterNet:
    """timm's ``FeatureGetterNet`` around ``net``: its forward returns the maps of the stages in
    ``out_indices`` (default: all; n: the last n), its ``feature_info`` their channels and
    reductions (``.channels()``, ``.reduction()``). The layers after the last index and the head
    are pruned away."""
    if not isinstance(net, ZooNet):
        raise ValueError(f"{type(net).__name__} is not one of the zoo's nets")
    take, _ = net._take_indices(out_indices)  # a ValueError for indices out of range
    return FeatureGetterNet(net, out_indices=tuple(take))
