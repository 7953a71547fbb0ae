"""Learning-rate schedules that torch.optim does not ship, and the optimizer's parameter groups."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["classifier_of", "classifiers_of", "param_groups", "warmup_cosine", "warmup_multistep"]

log = logging.getLogger(__name__)


def classifier_of(module: nn.Module) -> nn.Module:
    """The final classifier: ``get_classifier()`` where the net has it (every cnnzoo net, timm),
    else the last ``nn.Linear`` (torchvision's: ``fc``, ``classifier[-1]``, ``heads.head``)."""
    if hasattr(module, "get_classifier"):
        # a method, which nn.Module's __getattr__ types as a Tensor or a submodule
        return module.get_classifier()  # type: ignore[operator]
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(module).__name__} has no get_classifier() and no nn.Linear: cannot tell its "
            "classifier from the backbone for backbone_lr_scale"
        )
    return linears[-1]


def classifiers_of(module: nn.Module) -> list[nn.Module]:
    """The layers a new class count makes anew: the final classifier (``classifier_of``) and the
    auxiliary classifiers' last layers — a ``Linear`` to the same classes inside a submodule named
    ``aux…`` (GoogLeNet's ``aux1.fc2``/``aux2.fc2``, cnnzoo's and torchvision's; Inception v3's
    ``AuxLogits.fc``)."""
    classifier = classifier_of(module)
    classes = getattr(classifier, "out_features", None)
    auxiliary = [
        layer
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Linear)
        and layer.out_features == classes
        and any(part.lower().startswith("aux") for part in name.split(".")[:-1])
    ]
    return [classifier, *auxiliary]


def param_groups(
    module: nn.Module,
    *,
    exclude_norm_and_bias: bool,
    backbone_lr_scale: float = 1.0,
    lr: float | None = None,
) -> list[dict[str, Any]]:
    """The module's trainable parameters as optimizer groups.

    With ``exclude_norm_and_bias``, the norm and bias parameters get a group of their own with
    weight decay 0 (the others keep the optimizer's weight decay). Decaying the scale and shift
    of normalisation layers and the biases only pulls them towards zero without regularising the
    function ("no bias decay", He et al., 2019, Bag of Tricks, arXiv:1812.01187, Sec. 3.1).
    Every parameter with at most one dimension is one of those (ConvNeXt's layer-scale ``gamma``
    too) — the rule timm uses.

    With ``backbone_lr_scale`` != 1 (fine-tuning pretrained weights), the classifiers'
    parameters (``classifiers_of``: the final one and GoogLeNet's auxiliary ones, which a new
    class count makes anew) keep the optimizer's lr — their groups carry no ``"lr"`` —
    and every other parameter's group carries ``"lr": lr * backbone_lr_scale``, so ``lr`` (the
    optimizer's base lr) is needed; an explicit ``"lr"`` in a group wins over the optimizer's
    default. Schedulers that scale each group's own initial lr (``LambdaLR``: ``warmup_cosine``,
    ``warmup_multistep``; ``MultiStepLR``, ``CosineAnnealingLR``) keep the ratio; ``OneCycleLR``
    needs one ``max_lr`` per group for it.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if backbone_lr_scale == 1.0:
        parts: list[tuple[list[nn.Parameter], dict[str, Any]]] = [(params, {})]
    else:
        if lr is None:
            raise ValueError(
                f"backbone_lr_scale={backbone_lr_scale} sets the backbone's lr to a multiple of "
                "the optimizer's: pass that base lr as lr=..."
            )
        if not backbone_lr_scale > 0:
            raise ValueError(f"backbone_lr_scale must be positive, got {backbone_lr_scale}")
        head_ids = {id(p) for layer in classifiers_of(module) for p in layer.parameters()}
        head = [p for p in params if id(p) in head_ids]
        backbone = [p for p in params if id(p) not in head_ids]
        parts = [(backbone, {"lr": lr * backbone_lr_scale}), (head, {})]
    groups: list[dict[str, Any]] = []
    for members, options in parts:
        if not exclude_norm_and_bias:
            groups.append({"params": members, **options})
            continue
        groups.append({"params": [p for p in members if p.ndim > 1], **options})
        groups.append(
            {"params": [p for p in members if p.ndim <= 1], "weight_decay": 0.0, **options}
        )
    return groups


def _warmup(step: int, warmup_steps: int) -> float:
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def warmup_cosine(
    optimizer: Optimizer, *, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """Linear warmup from 0 over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` x lr.

    ``total_steps`` counts scheduler steps (batches for ``scheduler_interval=step``); the training
    module fills it in from the trainer when the config leaves it out. A warmup as long as the
    run or longer is shortened to half the run, with a warning: the run would end still warming.
    """
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(
            f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps} and {warmup_steps}"
        )
    if warmup_steps >= total_steps:
        shortened = total_steps // 2
        log.warning(
            "model.scheduler.warmup_steps=%d is not shorter than the run (%d steps): "
            "warming up over %d steps instead",
            warmup_steps,
            total_steps,
            shortened,
        )
        warmup_steps = shortened

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def warmup_multistep(
    optimizer: Optimizer,
    *,
    milestones: Sequence[int],
    gamma: float = 0.1,
    warmup_steps: int = 0,
) -> LambdaLR:
    """Linear warmup over ``warmup_steps``, then the lr times ``gamma`` at each milestone.

    The step schedule of the ResNet papers (He et al., 2016: /10 at 32k and 48k iterations; the
    90-epoch ImageNet recipe: /10 at epochs 30, 60). Milestones count scheduler steps: epochs
    with ``scheduler_interval=epoch``.
    """
    if list(milestones) != sorted(milestones):
        raise ValueError(f"milestones must increase, got {list(milestones)}")

    def factor(step: int) -> float:
        passed = sum(step >= milestone for milestone in milestones)
        return _warmup(step, warmup_steps) * gamma**passed

    return LambdaLR(optimizer, factor)
