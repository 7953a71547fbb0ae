"""Resuming: `ckpt_path=last` (or a run's checkpoint file) continues that run — in its own run dir,
with one record: its checkpoints, CSV log (the next version beside the first), summary, train.log
and W&B run. Exactness across a kill is in test_failures.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli import SHORT, run
from wandb_records import run_info

from cnnzoo.checkpoint import find_last_checkpoint, read_checkpoint, resume_checkpoint
from cnnzoo.errors import UserError


def test_ckpt_path_last_continues_the_newest_run_in_its_own_dir(tmp_path: Path) -> None:
    args = [*SHORT, "logger=[csv,wandb]", f"paths.log_dir={tmp_path}"]
    run("train", *args, "trainer.max_epochs=1")
    (run_dir,) = (tmp_path / "debug" / "runs").iterdir()
    first_id = (run_dir / "wandb_run_id").read_text().strip()

    run("train", *args, "trainer.max_epochs=2", "ckpt_path=last")

    assert list((tmp_path / "debug" / "runs").iterdir()) == [run_dir]  # no second run dir
    record = json.loads((run_dir / "summary.json").read_text())
    assert record["status"] == "completed"
    assert record["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert sorted(p.name for p in (run_dir / "csv").iterdir()) == ["version_0", "version_1"]
    log = (run_dir / "train.log").read_text()
    assert log.count("Instantiating datamodule") == 2  # both parts of the run, one log
    # the W&B run resumed: a second offline segment of the same run id
    segments = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(segments) == 2
    assert {run_info(path)["id"] for path in segments} == {first_id}


def test_ckpt_path_last_names_the_newest_run_and_fails_clearly_without_one(
    tmp_path: Path,
) -> None:
    for name in ("2026-01-01_00-00-00", "2026-01-02_00-00-00"):
        ckpt = tmp_path / "train/runs" / name / "checkpoints/last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
        time.sleep(0.01)
    assert find_last_checkpoint(tmp_path / "train").parent.parent.name == "2026-01-02_00-00-00"
    assert find_last_checkpoint(tmp_path / "other") is None

    with pytest.raises(UserError, match="ckpt_path=last: no run under"):
        resume_checkpoint("last", tmp_path / "empty")
