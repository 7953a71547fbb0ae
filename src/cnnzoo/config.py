"""Where the configs live and the OmegaConf resolvers they use.

- ``${datamodule:num_classes}`` (also ``in_channels``, ``image_size``, ``mean``, ``std``,
  ``class_names``) reads an attribute of the datamodule that the ``data`` node describes, so a
  model config never hard-codes what the data decides.
- ``${stem_for:<image size>}`` picks a network stem from the image size: ``small`` (3x3 stride-1,
  no max-pool) for images of at most 64 pixels a side, ``imagenet`` (the paper's stride-4 stem)
  above.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from cnnzoo.models.common import stem_for

__all__ = [
    "CONFIG_MODULE",
    "CONFIG_PATH",
    "config_options",
    "register_resolvers",
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


def register_resolvers() -> None:
    for name, resolver in (("datamodule", _datamodule), ("stem_for", stem_for)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolvers()
