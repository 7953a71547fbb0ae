"""The per-step training metrics count what torchmetrics' reference implementation counts."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from cnnzoo.metrics import TopKAccuracy


@pytest.mark.parametrize("top_k", [1, 5])
def test_top_k_accuracy_matches_torchmetrics_over_several_batches(top_k: int) -> None:
    ours, reference = (
        TopKAccuracy(top_k=top_k),
        MulticlassAccuracy(10, top_k=top_k, average="micro"),
    )
    for _ in range(4):
        logits, labels = torch.randn(33, 10), torch.randint(0, 10, (33,))
        ours.update(logits, labels)
        reference.update(logits, labels)
    assert ours.compute().item() == pytest.approx(reference.compute().item())


def test_top_k_accuracy_counts_a_label_among_the_k_best_as_correct() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    metric = TopKAccuracy(top_k=2)
    metric.update(logits, torch.tensor([1, 0]))  # second in the first row; last in the second
    assert metric.compute().item() == 0.5


def test_top_k_accuracy_rejects_a_non_positive_k() -> None:
    with pytest.raises(ValueError, match="top_k"):
        TopKAccuracy(top_k=0)
