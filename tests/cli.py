"""Run a cnnzoo command in a subprocess, as a user would — for the tests whose behaviour is the
process itself: exit codes, one-line errors, signals, sweeps, DDP, the installed wheel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the test settings, for runs in-process (conftest) and in a subprocess alike:
# no progress bar or summary table in test output
QUIET = ("callbacks.rich_progress_bar=null", "callbacks.rich_model_summary=null")
# a few batches of LeNet-5 on the bundled MNIST sample
SHORT = ("debug=limit", "trainer.max_epochs=2", *QUIET)
# the entry points: `python <name>.py` in the checkout (report: `python -m cnnzoo.report`)
SCRIPTS = {"train", "eval", "predict", "export"}


def env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        **extra,
    }


def command(entry: str, *args: str) -> list[str]:
    """``train`` (or ``train.py``) -> python train.py ...; ``-m cnnzoo.report`` -> python -m
    cnnzoo.report ...; anything else is run as it is."""
    if entry.removesuffix(".py") in SCRIPTS:
        return [sys.executable, str(ROOT / f"{entry.removesuffix('.py')}.py"), *args]
    if entry.startswith("-m "):
        return [sys.executable, "-m", entry[3:], *args]
    return [entry, *args]


def run(
    entry: str,
    *args: str,
    check: bool = True,
    cwd: Path = ROOT,
    timeout: float = 900,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command(entry, *args),
        cwd=cwd,
        env=env(**(extra_env or {})),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{entry} {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def error_message(result: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed, checked to be one line without a traceback: Hydra's
    "Error executing job with overrides: [...]" (or "Error ...") then the message."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("Error executing job"):
            assert i + 1 < len(lines) and not lines[i + 1].startswith("Set the environment")
            return lines[i + 1]
        if line.startswith("Error"):
            return line
    raise AssertionError(f"no error message in:\n{result.stderr[-3000:]}")


def start(entry: str, *args: str, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """A command running in the background, its output collected for ``finish``."""
    return subprocess.Popen(
        command(entry, *args),
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_for(condition: Callable[[], object], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def stop(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(signum)
    output, _ = process.communicate(timeout=300)
    return process.returncode, output


def last_line(lines: Sequence[str]) -> str:
    return lines[-1] if lines else ""
