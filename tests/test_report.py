"""`python -m cnnzoo.report <dir>` turns the runs under a directory into one table and plots, and
a sweep ends with that report in its directory."""

from __future__ import annotations

import csv
from pathlib import Path

from cli import SHORT, run


def test_a_sweep_ends_with_its_report_and_the_command_rebuilds_it(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run("train.py", "-m", "model=lenet,mlp", f"hydra.sweep.dir={sweep}", *SHORT)
    report = sweep / "report"
    for name in ("acc_vs_params.png", "acc_vs_flops.png", "learning_curves.png", "report.md"):
        assert (report / name).stat().st_size > 0, name
    with open(report / "report.csv", newline="") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"0", "1"}
    assert int(rows["0"]["params"]) == 61_706  # LeNet-5 on 1 x 28 x 28, 10 classes
    assert int(rows["1"]["flops"]) > 0
    assert all(
        0 <= float(row["test/acc"]) <= 1 and row["status"] == "completed" for row in rows.values()
    )

    (report / "report.md").unlink()
    result = run("-m cnnzoo.report", str(tmp_path))  # a parent dir works too
    assert "report.md" in result.stdout
    assert "lenet" in (tmp_path / "report" / "report.md").read_text()


def test_report_of_a_directory_without_runs_fails_clearly(tmp_path: Path) -> None:
    result = run("-m cnnzoo.report", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "no runs" in result.stderr
