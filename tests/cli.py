"""Run the entry points as a user would, in a subprocess (for the results tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["callbacks.rich_progress_bar=null", "callbacks.rich_model_summary=null"]
SHORT = ["debug=limit", "trainer.max_epochs=2", *QUIET]


def run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [sys.executable, *(["-m", script[3:]] if script.startswith("-m ") else [script])]
    result = subprocess.run(
        [*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def train_short(run_dir: Path, *args: str) -> Path:
    """A few batches of LeNet-5 on the bundled MNIST sample; returns the run dir."""
    run("train.py", f"hydra.run.dir={run_dir}", *SHORT, *args)
    return run_dir
