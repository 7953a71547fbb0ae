"""Exact resume: a run stopped after an epoch and resumed from last.ckpt ends where an unbroken run
ends; `ckpt_path=last` finds the checkpoint; Ctrl-C / SIGTERM leave one behind."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnzoo.checkpoint import find_last_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# a short deterministic run: 3 epochs of 5 batches, cosine schedule over all 15 steps
SHORT = [
    "debug=limit",
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "callbacks.rich_progress_bar=null",
    "test=false",
]
# stops the run after its first epoch, as a pre-emption would
STOP_AFTER_FIRST_EPOCH = [
    "+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping",
    "+callbacks.stop.monitor=val/acc",
    "+callbacks.stop.mode=max",
    "+callbacks.stop.stopping_threshold=0.0",
]


def train(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def only_run(log_dir: Path) -> Path:
    (run,) = (log_dir / "debug" / "runs").iterdir()
    return run


def ckpt_run_dir(log_dir: Path) -> Path:
    return find_last_checkpoint(log_dir / "train").parent.parent


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_resumed_run_ends_exactly_where_an_unbroken_run_ends(tmp_path: Path) -> None:
    train(*SHORT, f"paths.log_dir={tmp_path / 'unbroken'}")
    unbroken = only_run(tmp_path / "unbroken")

    broken_logs = tmp_path / "broken"
    train(*SHORT, *STOP_AFTER_FIRST_EPOCH, f"paths.log_dir={broken_logs}")
    broken = only_run(broken_logs)
    assert torch.load(broken / "checkpoints/last.ckpt", weights_only=False)["epoch"] == 0
    train(*SHORT, "ckpt_path=last", f"paths.log_dir={broken_logs}")

    expected = weights(unbroken / "checkpoints/last.ckpt")
    resumed = weights(broken / "checkpoints/last.ckpt")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0, msg=name)
    # the resumed run records its metrics in the interrupted run's directory and CSV file
    runs = sorted((broken_logs / "debug" / "runs").iterdir())
    resume_record = json.loads((runs[-1] / "summary.json").read_text())
    assert resume_record["output_dir"] == str(broken)
    unbroken_record = json.loads((unbroken / "summary.json").read_text())
    assert resume_record["metrics"]["val/acc"] == unbroken_record["metrics"]["val/acc"]

    def validated_epochs(version: int) -> set[str]:
        with open(broken / f"csv/version_{version}/metrics.csv") as f:
            return {row["epoch"] for row in csv.DictReader(f) if row.get("val/acc")}

    assert validated_epochs(0) == {"0"}
    assert validated_epochs(1) == {"1", "2"}


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

    result = subprocess.run(
        [sys.executable, "train.py", "ckpt_path=last", f"paths.log_dir={tmp_path / 'empty'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "ckpt_path=last: no run under" in result.stderr


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_a_signal_during_training_leaves_a_checkpoint_to_resume_from(
    tmp_path: Path, signum: int
) -> None:
    args = ["trainer.max_epochs=30", "callbacks.rich_progress_bar=null", "test=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "train.py", *args, f"paths.log_dir={tmp_path}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while find_last_checkpoint(tmp_path / "train") is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    # (Lightning ends a SIGTERM-ed run with SystemExit, status 0; Ctrl-C with status 1)
    assert "Training interrupted: saving" in output, output[-3000:]
    summary = json.loads((ckpt_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "failed"

    ckpt = find_last_checkpoint(tmp_path / "train")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["global_step"] > 0
    # resume and finish the epoch it was in
    result = train(
        f"trainer.max_epochs={state['epoch'] + 1}",
        "callbacks.rich_progress_bar=null",
        "test=false",
        "ckpt_path=last",
        f"paths.log_dir={tmp_path}",
    )
    assert "Restoring states from the checkpoint" in result.stdout + result.stderr
