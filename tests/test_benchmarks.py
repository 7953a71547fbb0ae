"""The benchmark harness measures what it says: both sides train, on the same images."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from benchmarks.run import LIGHTNING, VARIANTS, Case, measure_overhead

TINY = Case("LeNet-5, 512 images", ("model=lenet", "data.train_size=512"), 2)


@pytest.mark.parametrize("variant", ["no_bar", LIGHTNING])
def test_overhead_interleaves_both_loops_and_reports_a_ratio_per_epoch(variant: str) -> None:
    torch.manual_seed(0)
    result = measure_overhead(TINY, VARIANTS[variant])
    assert len(result.ratios) == TINY.epochs  # the warm-up epoch is dropped
    assert all(math.isfinite(r) and r > 0 for r in result.ratios)
    assert result.cnnzoo_ips > 0 and result.plain_ips > 0
    assert result.ratio == statistics.median(result.ratios)
