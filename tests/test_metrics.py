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


def test_several_k_share_one_update_and_match_torchmetrics_each() -> None:
    ours = TopKAccuracy(top_k=(1, 3, 5))
    references = [MulticlassAccuracy(10, top_k=k, average="micro") for k in (1, 3, 5)]
    for _ in range(4):
        logits, labels = torch.randn(33, 10), torch.randint(0, 10, (33,))
        ours.update(logits, labels)
        for reference in references:
            reference.update(logits, labels)
    expected = [reference.compute().item() for reference in references]
    assert ours.compute().tolist() == pytest.approx(expected)
    assert expected[0] < expected[1] < expected[2]  # the three k count different hits


def test_top_k_accuracy_counts_a_label_among_the_k_best_as_correct() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    metric = TopKAccuracy(top_k=2)
    metric.update(logits, torch.tensor([1, 0]))  # second in the first row; last in the second
    assert metric.compute().item() == 0.5


@pytest.mark.parametrize("top_k", [0, (1, 0), ()])
def test_top_k_accuracy_rejects_a_non_positive_k(top_k: int | tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="top_k"):
        TopKAccuracy(top_k=top_k)
