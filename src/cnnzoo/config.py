"""Where the configs live and the OmegaConf resolvers they use.

- ``${datamodule:num_classes}`` (also ``in_channels``, ``image_size``, ``mean``, ``std``,
  ``class_names``) reads an attribute of the datamodule that the ``data`` node describes, so a
  model config never hard-codes what the data decides.
- ``${stem_for:<image size>}`` picks a network stem from the image size: ``small`` (3x3 stride-1,
  no max-pool) for images of at most 64 pixels a side, ``imagenet`` (the paper's stride-4 stem)
  above — unless the node it is in (``model.net``) has pretrained ``weights``: then the stem
  they were trained with (``cnnzoo.models.weights.pick_stem``; ``model.net.stem=…`` on the
  command line replaces the resolver, so a chosen stem is kept).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from cnnzoo.errors import UserError

__all__ = [
    "CONFIG_MODULE",
    "CONFIG_PATH",
    "config_options",
    "register_resolvers",
    "validate",
]

# The configs ship inside the package (configs/ in the checkout): Hydra reads them through
# importlib, so an installed wheel finds them wherever it runs. A user's own config dir is added
# on top with `--config-dir <dir>` or `hydra.searchpath=[file://<dir>]`.
CONFIG_MODULE = "cnnzoo.configs"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
DATAMODULE_FIELDS = ("num_classes", "in_channels", "image_size", "mean", "std", "class_names")


def config_options(group: str) -> list[str]:
    """The options cnnzoo ships for a config group (``"model"`` -> ``["alexnet", ...]``)."""
    folder = files(CONFIG_MODULE)
    for part in group.split("/"):
        folder = folder / part
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith(".yaml")
    )


@lru_cache(maxsize=16)
def _datamodule_attribute(data_json: str, name: str) -> Any:
    from hydra.utils import instantiate

    data = json.loads(data_json)
    cls = get_class(data["_target_"])
    # class-level constants need no instance (and no data on disk); properties need one
    value = getattr(cls, name, None)
    if value is None or isinstance(value, property):
        value = getattr(instantiate(data), name)
    return list(value) if isinstance(value, tuple) else value


def _datamodule(name: str, *, _root_: DictConfig) -> Any:
    if name not in DATAMODULE_FIELDS:
        raise ValueError(
            f"${{datamodule:{name}}}: unknown field; choose one of {', '.join(DATAMODULE_FIELDS)}"
        )
    data = OmegaConf.to_container(_root_.data, resolve=True)
    return _datamodule_attribute(json.dumps(data, sort_keys=True), name)


def _stem_for(image_size: Any, *, _parent_: DictConfig) -> str:
    # torch is imported when a config is resolved, not when the resolver is registered
    from cnnzoo.models.weights import pick_stem

    name, weights = _parent_.get("name"), _parent_.get("weights")
    return pick_stem(int(image_size), name=name, weights=weights)


def register_resolvers() -> None:
    """The resolvers above; registering them imports nothing heavy, so that ``--help`` and
    ``--cfg job`` (which resolve nothing) print without torch."""
    for name, resolver in (
        ("datamodule", _datamodule),
        ("stem_for", _stem_for),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolvers()


# --- checking the values a user sets ------------------------------------------------------------

_INT, _NUMBER = "an integer", "a number"
# (key, kind, rule, ok) or (key, kind, rule, ok, nullable)
_Check = (
    tuple[str, str, str, Callable[[Any], bool]] | tuple[str, str, str, Callable[[Any], bool], bool]
)


_ABSENT = object()


def _check(
    cfg: DictConfig,
    key: str,
    kind: str,
    rule: str,
    ok: Callable[[Any], bool],
    nullable: bool = False,
) -> None:
    parent_key, _, name = key.rpartition(".")
    try:
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or name not in parent:
            return  # not part of this config
        if OmegaConf.is_missing(parent, name):
            return  # required and unset: Hydra says so itself
        value = parent[name]
    except Exception:  # an interpolation that cannot resolve: its own error comes later
        return
    if value is None and nullable:
        return
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not (whole if kind == _INT else numeric) or not ok(value):
        shown = "null" if value is None else repr(value) if isinstance(value, str) else value
        null = " (or null)" if nullable else ""
        raise UserError(
            f"{key}={shown} is not valid: expected {kind} {rule}{null}".replace("  ", " ")
        )


def validate(cfg: DictConfig) -> None:
    """Check the values users set most, before anything is built: one message naming the key,
    the value and what is allowed (constructors check the rest, and say so as clearly)."""
    checks: list[_Check] = [
        ("seed", _INT, "", lambda v: True, True),
        ("trainer.max_epochs", _INT, ">= 1, or -1 for no limit", lambda v: v >= 1 or v == -1),
        ("trainer.min_epochs", _INT, ">= 0", lambda v: v >= 0, True),
        ("trainer.accumulate_grad_batches", _INT, ">= 1", lambda v: v >= 1),
        ("trainer.log_every_n_steps", _INT, ">= 1", lambda v: v >= 1),
        ("trainer.check_val_every_n_epoch", _INT, ">= 1", lambda v: v >= 1, True),
        ("trainer.gradient_clip_val", _NUMBER, ">= 0", lambda v: v >= 0, True),
        ("data.batch_size", _INT, ">= 1", lambda v: v >= 1),
        ("data.num_workers", _INT, ">= 0", lambda v: v >= 0, True),
        (
            "data.val_size",
            _NUMBER,
            "in [0, 1) (a fraction) or an integer count >= 0",
            lambda v: (0 <= v < 1) or (isinstance(v, int) and v >= 0),
            True,
        ),
        ("data.mixup_alpha", _NUMBER, ">= 0", lambda v: v >= 0),
        ("data.cutmix_alpha", _NUMBER, ">= 0", lambda v: v >= 0),
        ("data.mix_prob", _NUMBER, "in [0, 1]", lambda v: 0 <= v <= 1),
        ("data.random_erasing", _NUMBER, "in [0, 1]", lambda v: 0 <= v <= 1),
        ("data.crop_padding", _INT, ">= 0", lambda v: v >= 0),
        ("model.optimizer.lr", _NUMBER, ">= 0", lambda v: v >= 0),
        ("model.optimizer.weight_decay", _NUMBER, ">= 0", lambda v: v >= 0),
        ("model.optimizer.momentum", _NUMBER, "in [0, 1)", lambda v: 0 <= v < 1),
        ("model.label_smoothing", _NUMBER, "in [0, 1)", lambda v: 0 <= v < 1),
        ("model.aux_loss_weight", _NUMBER, ">= 0", lambda v: v >= 0),
        ("model.backbone_lr_scale", _NUMBER, ">= 0", lambda v: v >= 0),
        ("model.scheduler.warmup_steps", _INT, ">= 0", lambda v: v >= 0),
        ("model.scheduler.min_lr_ratio", _NUMBER, "in [0, 1]", lambda v: 0 <= v <= 1),
    ]
    for key, kind, rule, ok, *nullable in checks:
        _check(cfg, key, kind, rule, ok, nullable=bool(nullable and nullable[0]))
