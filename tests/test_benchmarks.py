"""The benchmark harness measures what it says: both sides train, on the same images."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from benchmarks.cli import COMMANDS, HYDRA_IMPORT, CliCommand, measure_cli
from benchmarks.run import LIGHTNING, VARIANTS, Case, measure_overhead
from tests.cli import ROOT

TINY = Case("LeNet-5, 512 images", ("model=lenet", "data.train_size=512"), 2)


@pytest.mark.parametrize("variant", ["no_bar", LIGHTNING])
def test_overhead_interleaves_both_loops_and_reports_a_ratio_per_epoch(variant: str) -> None:
    torch.manual_seed(0)
    result = measure_overhead(TINY, VARIANTS[variant])
    assert len(result.ratios) == TINY.epochs  # the warm-up epoch is dropped
    assert all(math.isfinite(r) and r > 0 for r in result.ratios)
    assert result.cnnzoo_ips > 0 and result.plain_ips > 0
    assert result.ratio == statistics.median(result.ratios)


def test_cli_section_times_each_command_and_tells_whether_it_imported_torch() -> None:
    train_help = next(c for c in COMMANDS if c.args == ("train.py", "--help"))
    torch_import = CliCommand("import torch", ("-c", "import torch"))
    result = measure_cli(ROOT, repeats=1, commands=[HYDRA_IMPORT, train_help, torch_import])
    assert all(seconds > 0 for seconds, _ in result.values())
    assert result[torch_import.label][1] and not result[train_help.label][1]
