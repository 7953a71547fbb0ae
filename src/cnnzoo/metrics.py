"""Training metrics cheap enough to update on every step."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["TopKAccuracy"]


class TopKAccuracy(Metric):
    """Share of samples whose label is among the ``top_k`` highest logits (micro-averaged).

    The same number as torchmetrics' ``MulticlassAccuracy(average="micro", top_k=k)``, counted
    with one ``topk`` and two counters: its general stat-scores path costs about 3x more per
    update, a few percent of a small network's training step (benchmarks/RESULTS.md). The
    counters are summed across DDP processes by ``compute()``.
    """

    full_state_update = False
    correct: Tensor
    total: Tensor

    def __init__(self, top_k: int = 1) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k}")
        self.top_k = top_k
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        top = logits.detach().topk(self.top_k, dim=1).indices  # N x top_k
        self.correct += (top == target[:, None]).any(dim=1).sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        return self.correct.float() / self.total
