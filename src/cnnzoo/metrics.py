"""Training metrics cheap enough to update on every step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["TopKAccuracy"]


class TopKAccuracy(Metric):
    """Share of samples whose label is among the ``top_k`` highest logits (micro-averaged).

    The same number as torchmetrics' ``MulticlassAccuracy(average="micro", top_k=k)``, counted
    with one ``topk`` and a counter: its general stat-scores path costs about 3x more per update,
    a few percent of a small network's training step (benchmarks/RESULTS.md). Several ``k`` at
    once (``top_k=(1, 5)``) share that one ``topk`` and update, and ``compute()`` returns one
    accuracy per ``k``; an int ``top_k`` computes a scalar. The counters are summed across DDP
    processes by ``compute()``.
    """

    full_state_update = False
    correct: Tensor
    total: Tensor

    def __init__(self, top_k: int | Sequence[int] = 1) -> None:
        super().__init__()
        ks = (top_k,) if isinstance(top_k, int) else tuple(top_k)
        if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
            raise ValueError(f"top_k must be positive integers, got {top_k!r}")
        self.top_k = top_k
        self.max_k = max(ks)
        self.scalar = isinstance(top_k, int)
        # a label found at rank r (0-based) counts for every k > r: the running sum of the hits
        # along the ranks, read at column k - 1
        self.register_buffer("columns", torch.tensor([k - 1 for k in ks]), persistent=False)
        self.add_state("correct", torch.zeros(len(ks), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        top = logits.detach().topk(self.max_k, dim=1).indices  # N x max_k
        hits = (top == target[:, None]).cumsum(dim=1)  # at most one hit per row: 0, .., 0, 1, ..
        self.correct += hits.index_select(1, self.columns).sum(dim=0)
        self.total += target.numel()

    def compute(self) -> Tensor:
        accuracy = self.correct.float() / self.total
        return accuracy[0] if self.scalar else accuracy
