"""A sweep job pre-empted or out of time on SLURM resumes from its own checkpoint.

In-process: what a job does at submitit's signal (``cnnzoo.requeue``). Through submitit's local
launcher (no SLURM needed): the whole requeue of a sweep job. On the real one-node cluster of
``scripts/services/slurm.sh``: ``tests/test_slurm.py``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from cli import SHORT, command, env
from conftest import compose_config, validated_steps
from omegaconf import open_dict

from cnnzoo import requeue
from cnnzoo.records import LOCK_FILE, Status
from cnnzoo.train import train

# 3 epochs of 10 batches, every step in metrics.csv
STEPS = ("debug=limit", "trainer.max_epochs=3", "trainer.limit_train_batches=10")
LOG_EVERY_STEP = ("trainer.log_every_n_steps=1", "test=false")


class SignalAt(L.Callback):
    """Sends this process submitit's signal once training reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR2)


@pytest.fixture
def submitit_job(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, Any]]]:
    """This process as a submitit job: submitit's handler on SIGUSR2 (recording its calls
    instead of requeuing), wrapped by ``requeue.install`` as the launcher does."""
    monkeypatch.setattr(requeue, "_state", requeue._State())
    calls: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append((signum, frame)))
    try:
        requeue.install()
        yield calls
    finally:
        signal.signal(signal.SIGUSR2, previous)


def _train(out: Path, *overrides: str, signal_at: int | None = None) -> dict[str, Any]:
    cfg = compose_config(*SHORT, *STEPS, *LOG_EVERY_STEP, *overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.log_dir = str(out.parent / "logs")
        if signal_at is not None:
            cfg.callbacks.signal_at = {"_target_": f"{__name__}.SignalAt", "step": signal_at}
    return train(cfg)


def _loops(checkpoint: Path) -> tuple[int, int, int]:
    """(global step, batches the loggers counted, scheduler steps) of a checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    loops = state["loops"]["fit_loop"]["epoch_loop.state_dict"]
    return (
        state["global_step"],
        loops["_batches_that_stepped"],
        state["lr_schedulers"][0]["_step_count"],
    )


def test_the_signal_stops_training_after_the_batch_saves_it_and_requeues_once(
    tmp_path: Path, submitit_job: list[tuple[int, Any]]
) -> None:
    job = tmp_path / "job"
    with pytest.raises(SystemExit) as stopped:
        _train(job, signal_at=13)
    # training stopped after the batch in progress (the 14th), and saved it: its newest state
    saved = job / "checkpoints" / "last.ckpt"
    assert torch.load(saved, map_location="cpu", weights_only=False)["global_step"] == 14
    assert submitit_job == []  # nothing requeued before the checkpoint is saved and recorded

    outcome = requeue.outcome(stopped.value)
    assert outcome is not None and outcome.status == Status.INTERRUPTED
    assert "requeued" in str(outcome.error)
    requeue.requeue_now()
    requeue.requeue_now()
    assert [signum for signum, _ in submitit_job] == [signal.SIGUSR2]


def test_a_job_resumed_after_the_signal_ends_as_if_it_ran_through(
    tmp_path: Path, submitit_job: list[tuple[int, Any]]
) -> None:
    whole = tmp_path / "whole"
    _train(whole)
    job = tmp_path / "job"
    with pytest.raises(SystemExit):
        _train(job, signal_at=13)
    requeue._state = requeue._State()  # the requeued job is a new process
    _train(job, f"ckpt_path={job}/checkpoints/last.ckpt")
    # the same optimizer steps, logger steps and learning-rate schedule as the unbroken run:
    # nothing trained twice, nothing skipped
    assert _loops(job / "checkpoints" / "last.ckpt") == _loops(whole / "checkpoints" / "last.ckpt")
    # and every step's metrics logged once, across the two attempts' CSV logs
    steps = [
        int(float(row["step"]))
        for version in sorted((job / "csv").iterdir())
        for row in csv.DictReader(open(version / "metrics.csv", newline=""))
        if row.get("train/loss_step")
    ]
    assert steps == list(range(30))


def test_outside_training_the_signal_requeues_at_once(
    submitit_job: list[tuple[int, Any]],
) -> None:
    os.kill(os.getpid(), signal.SIGUSR2)
    assert [signum for signum, _ in submitit_job] == [signal.SIGUSR2]
    assert requeue.requested() and requeue.requeued()


def test_an_sbatch_job_asks_for_its_signal_and_requeues_itself_with_scontrol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scripts/slurm/train.sbatch`` sets CNNZOO_REQUEUE_SIGNAL=USR1: that signal requeues the
    job from global rank 0 (``scontrol requeue <job>``), the other ranks leave it to rank 0."""
    calls = tmp_path / "scontrol.calls"
    scontrol = tmp_path / "bin" / "scontrol"
    scontrol.parent.mkdir()
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{scontrol.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("CNNZOO_REQUEUE_SIGNAL", "USR1")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        for rank in ("1", "0"):
            monkeypatch.setattr(requeue, "_state", requeue._State())
            monkeypatch.setenv("SLURM_PROCID", rank)
            requeue.install_from_environment()
            os.kill(os.getpid(), signal.SIGUSR1)  # outside training: at once
            assert requeue.requeued()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert calls.read_text().splitlines() == ["requeue 123"]


def test_lightning_does_not_requeue_the_jobs_too(
    submitit_job: list[tuple[int, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exactly one mechanism: in a SLURM job where cnnzoo requeues, Lightning's SLURM environment
    has its SIGUSR1 auto-requeue off, unless the trainer config names a cluster environment."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    cfg = compose_config("trainer=cpu")
    (plugin,) = requeue.cluster_plugins(cfg.trainer)
    assert isinstance(plugin, SLURMEnvironment) and plugin.auto_requeue is False

    own = compose_config(
        "trainer=cpu",
        "trainer.plugins=[{_target_: lightning.fabric.plugins.environments.SLURMEnvironment}]",
    )
    assert requeue.cluster_plugins(own.trainer) == []
    monkeypatch.delenv("SLURM_NTASKS")  # not a SLURM job (submitit's local launcher)
    assert requeue.cluster_plugins(cfg.trainer) == []


def _epoch_of(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return -1


@pytest.mark.slow
def test_a_local_launcher_job_requeued_at_its_signal_resumes_in_its_own_dir(
    tmp_path: Path,
) -> None:
    """``hydra/launcher=local`` runs each job as submitit does on SLURM; submitit's signal to the
    job requeues it (the local executor restarts it), and it resumes from its own checkpoint."""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "hydra/launcher=local",
        *SHORT,
        "trainer=cpu",
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=40",
        "seed=1",
        f"hydra.sweep.dir={sweep}",
    ]
    job = sweep / "0"
    process = subprocess.Popen(
        command("train", *args),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while _epoch_of(job / "checkpoints" / "last.ckpt") < 1:
            assert process.poll() is None and time.time() < deadline, "no epoch-1 checkpoint"
            time.sleep(0.2)
        holder = json.loads((job / LOCK_FILE).read_text())
        os.kill(holder["pid"], signal.SIGUSR2)
        output, _ = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]

    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == Status.COMPLETED
    assert summary["resumed_from"] == str(job / "checkpoints" / "last.ckpt")
    assert sorted(p.name for p in (job / "csv").iterdir()) == ["version_0"]
    # every epoch validated once, at the steps of an unbroken run
    assert validated_steps(job) == [(e, 40 * (e + 1) - 1) for e in range(4)]
    log = (job / "train.log").read_text()
    assert "requeued: resuming job 0 from its own checkpoint" in log
    assert "Resuming from" in log
