"""Size and cost of a network: parameters, forward FLOPs per image, and a per-layer table.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one image: a multiply-add
counts as 2 FLOPs. (Many papers quote multiply-adds as "FLOPs": ResNet-50's "4.1 GFLOPs" are
4.1 G multiply-adds, 8.2 GFLOPs here.) Only convolutions and matrix products are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = [
    "LayerRow",
    "config_cost",
    "count_flops",
    "count_parameters",
    "format_count",
    "layer_table",
]


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs for one ``C x H x W`` image, counted in eval mode on the model's device."""
    was_training = model.training
    model.eval()
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with FlopCounterMode(display=False) as counter:
            # .forward: a network compiled in place (``net.compile()``) is counted uncompiled
            model.forward(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops()


def config_cost(cfg: DictConfig) -> tuple[int, int]:
    """(parameters, forward FLOPs per image) of the network a training config describes, at its
    data's input shape. The network is built on the meta device: no weights are allocated, so
    measuring a large candidate (the Optuna sweeper's size budget) costs next to nothing."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import cnnzoo.config  # noqa: F401  (registers the resolvers the model config uses)

    # the data node alone: its paths (data_dir) do not change the shapes
    data = OmegaConf.merge(cfg.data, {"data_dir": "."})
    probe = OmegaConf.create(
        {"data": data, "c": "${datamodule:in_channels}", "s": "${datamodule:image_size}"}
    )
    with torch.device("meta"):
        net = instantiate(cfg.model.net)
    return count_parameters(net), count_flops(net, (int(probe.c), int(probe.s), int(probe.s)))


@dataclass(frozen=True)
class LayerRow:
    """One module's line in a layer table: its output shape and its own parameters."""

    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    parameters: int
    depth: int


@torch.no_grad()
def layer_table(
    model: nn.Module, input_shape: Sequence[int], *, max_depth: int = 2
) -> list[LayerRow]:
    """Run one image through ``model`` and record every module down to ``max_depth`` levels.

    A row's parameters include its children's, so the top-level rows add up to the total.
    """
    rows: dict[str, LayerRow] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            if isinstance(output, Tensor):
                shapes[name] = tuple(output.shape)
            elif isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
                shapes[name] = tuple(output[0].shape)

        return hook

    handles = []
    for name, module in model.named_modules():
        depth = name.count(".") + 1 if name else 0
        if not name or depth > max_depth:
            continue
        rows[name] = LayerRow(name, type(module).__name__, None, count_parameters(module), depth)
        handles.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return [
        LayerRow(row.name, row.kind, shapes.get(row.name), row.parameters, row.depth)
        for row in rows.values()
    ]


def format_count(value: float) -> str:
    """``11689512 -> '11.69M'``, ``1.82e9 -> '1.82G'``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"
