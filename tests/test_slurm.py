"""On a real SLURM cluster (the one-node cluster of ``scripts/services/slurm.sh``): a sweep
through ``hydra/launcher=slurm`` whose jobs are pre-empted and reach their time-limit signal
mid-training, and the README's ``sbatch scripts/slurm/train.sbatch`` on a fresh clone.

Skipped when no cluster answers (``sinfo``); with ``CNNZOO_TEST_SLURM=1`` (what
``scripts/services/up.sh`` exports, and CI sets) a missing cluster fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli import ROOT, SHORT, command, env
from conftest import validated_steps
from wandb_records import run_info

from cnnzoo.records import Status

pytestmark = [pytest.mark.services, pytest.mark.slow]

# lines that a local run does not print either (cnnzoo.console filters them)
NOISE = ("💡 Tip", "TPU available", "LeafSpec", "SLURM auto-requeueing", "`srun` command")


def _cluster_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM client here (sinfo)"
    try:
        shown = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return "the SLURM cluster is down (sinfo got no answer in 10 s)"
    if shown.returncode != 0 or not re.search(r"idle|mixed|allocated", shown.stdout):
        return f"the SLURM cluster is down (sinfo: {(shown.stdout + shown.stderr).strip()!r})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("CNNZOO_TEST_SLURM") == "1":
        pytest.fail(f"CNNZOO_TEST_SLURM=1 but {problem}")
    pytest.skip(f"{problem}: start one with `sudo scripts/services/slurm.sh`")


def _wait(condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _requeued(job: str) -> bool:
    """Requeued and held: SLURM lets a requeued job start again after 120 s (BeginTime)."""
    return (
        "BeginTime"
        in subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True
        ).stdout
    )


def _start_now(job: str) -> None:
    """Start a requeued job now rather than after SLURM's 120 s. Not in the second it was
    requeued: slurmd refuses a job whose credential was revoked in the second its new one was
    issued ("Killing non-startable batch JobId=…: Job credential revoked", slurm 22.05)."""
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)


def _array_id(sweep: Path) -> str:
    """The SLURM job array of a sweep's jobs (submitit's folders: ``<array>_<task>``)."""
    names = sorted(p.name for p in (sweep / ".submitit").iterdir())
    arrays = {name.split("_")[0] for name in names if re.fullmatch(r"\d+_\d+", name)}
    assert len(arrays) == 1, names
    return arrays.pop()


def _queued(job: str) -> bool:
    return bool(
        subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip()
    )


def _epoch(job_dir: Path) -> int:
    try:
        state = torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=False)
        return int(state["epoch"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return -1


def test_pre_empted_and_timed_out_sweep_jobs_resume_in_their_own_dirs(
    slurm_cluster: None, tmp_path: Path
) -> None:
    """Job 1 gets submitit's time-limit signal (SIGUSR2); job 0 is then pre-empted by a job of
    the `urgent` partition (SLURM's SIGTERM, GraceTime). Each is requeued and resumes from the
    checkpoint it saved at the step it reached: one record, no epoch trained twice."""
    epochs, batches = 16, 60  # the bundled sample has 63 training batches of 64
    sweep = tmp_path / "sweep"
    name = f"cnnzoo-test-{os.getpid()}"  # the SLURM jobs' name: cancelled whatever happens
    process = subprocess.Popen(
        command(
            "train",
            "-m",
            "hydra/launcher=slurm",
            "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.tasks_per_node=1",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
            f"hydra.launcher.name={name}",
            *SHORT,
            "logger=many_loggers",
            "trainer=cpu",
            f"trainer.max_epochs={epochs}",
            f"trainer.limit_train_batches={batches}",
            "seed=1,2",
            f"hydra.sweep.dir={sweep}",
        ),
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait(lambda: min(_epoch(sweep / "0"), _epoch(sweep / "1")) >= 0, "an epoch of both")
        array = _array_id(sweep)
        reached = {}
        # job 1: the time-limit signal (what SLURM sends signal_delay_s before the limit)
        reached["1"] = _epoch(sweep / "1")
        subprocess.run(["scancel", "--signal=USR2", f"{array}_1"], check=True)
        _wait(lambda: _requeued(f"{array}_1"), "job 1 to be requeued")
        # job 0: pre-empted by a job that needs every CPU of the node
        reached["0"] = _epoch(sweep / "0")
        subprocess.run(
            ["sbatch", "-p", "urgent", f"-c{os.cpu_count()}", "--mem=100M", "-o", "/dev/null"]
            + ["--wrap", "sleep 1"],
            check=True,
            capture_output=True,
        )
        _wait(lambda: _requeued(f"{array}_0"), "job 0 to be requeued")
        for job in ("0", "1"):  # the urgent job goes first (a higher tier), then these
            _start_now(f"{array}_{job}")
        output, _ = process.communicate(timeout=600)
    finally:
        process.kill()
        subprocess.run(["scancel", "--name", name], check=False)
    assert process.returncode == 0, output[-4000:]

    for job in ("0", "1"):
        job_dir = sweep / job
        summary = json.loads((job_dir / "summary.json").read_text())
        assert summary["status"] == Status.COMPLETED, summary
        assert summary["resumed_from"] == str(job_dir / "checkpoints" / "last.ckpt")
        # one record: one CSV, each epoch validated once at the steps of an unbroken run, one
        # TensorBoard log, the W&B run continued (a second offline segment of the same id)
        assert sorted(p.name for p in (job_dir / "csv").iterdir()) == ["version_0"]
        assert validated_steps(job_dir) == [(e, batches * (e + 1) - 1) for e in range(epochs)]
        assert sorted(p.name for p in (job_dir / "tensorboard").iterdir()) == ["version_0"]
        first, second = sorted((job_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        run_id = (job_dir / "wandb_run_id").read_text().strip()
        assert run_info(second)["id"] == run_id
        if job == "1":  # closed before the requeue; SLURM's SIGTERM (job 0) reaches W&B's
            assert run_info(first)["id"] == run_id  # service too, before it wrote its file
        # resumed from the step the signal stopped it at: nothing before it trained again. A
        # signal between two epochs (validating, saving) finds nothing to save beyond the
        # epoch's own last.ckpt: the job resumes from that, at the epoch's end
        log = (job_dir / "train.log").read_text()
        saved = re.findall(r"Training interrupted: saving \S+ at step (\d+)", log)
        (resumed,) = re.findall(r"Resuming from \S+ \(epoch \d+, step (\d+)", log)
        assert len(saved) <= 1 and int(resumed) >= batches * (reached[job] + 1)
        if saved:
            assert int(resumed) == int(saved[0])
        else:
            assert int(resumed) % batches == 0
        assert f"requeued: resuming job {job} from its own checkpoint" in log
        # the job's log is as quiet as a local run
        (stderr,) = (sweep / ".submitit" / f"{array}_{job}").glob("*_log.err")
        assert not [
            line for line in stderr.read_text().splitlines() if any(n in line for n in NOISE)
        ]
    assert "this job is pre-empted" in (sweep / "0" / "train.log").read_text()


def _fresh_clone(tmp_path: Path) -> Path:
    """The checkout's tracked files, as `git clone` makes them, with this Python environment
    as its `.venv` (the script activates it)."""
    import sys

    if sys.prefix == sys.base_prefix:
        pytest.skip("scripts/slurm/train.sbatch activates .venv: run the tests in a virtualenv")
    clone = tmp_path / "clone"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    (clone / ".venv").symlink_to(sys.prefix)
    return clone


def test_the_readme_sbatch_script_trains_on_a_fresh_clone_and_resumes_after_its_signal(
    slurm_cluster: None, tmp_path: Path
) -> None:
    """`sbatch scripts/slurm/train.sbatch …` as the README shows it, on CPUs (sbatch flags over
    the script's GPU lines): DDP over srun on 2 processes; SIGUSR1 (its time-limit warning)
    stops both ranks after the same batch, saves, requeues; the job resumes in its run dir."""
    clone = _fresh_clone(tmp_path)
    epochs, batches = 10, 60
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0"]
        + ["--cpus-per-task=1", "--time=20", "scripts/slurm/train.sbatch"]
        + ["trainer.accelerator=cpu", *SHORT, f"trainer.max_epochs={epochs}"]
        + [f"trainer.limit_train_batches={batches}"],
        cwd=clone,
        env=env(),
        capture_output=True,
        text=True,
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    run_dir = clone / "logs" / "train" / "runs" / f"slurm-{job}"
    try:
        _wait(lambda: _epoch(run_dir) >= 1, "epoch 1")
        reached = _epoch(run_dir)
        subprocess.run(["scancel", "--signal=USR1", job], check=True)
        _wait(lambda: _requeued(job), "the job to requeue itself")
        _start_now(job)
        _wait(lambda: not _queued(job), "the job to end", timeout=600)
    finally:
        subprocess.run(["scancel", job], check=False)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == Status.COMPLETED, summary
    assert summary["resumed_from"] == f"logs/train/runs/slurm-{job}/checkpoints/last.ckpt"
    assert sorted(p.name for p in (run_dir / "csv").iterdir()) == ["version_0"]
    assert validated_steps(run_dir) == [(e, batches * (e + 1) - 1) for e in range(epochs)]
    log = (run_dir / "train.log").read_text()
    # both ranks stopped after the same batch and saved it; the job resumed exactly there
    saved = set(re.findall(r"Training interrupted: saving \S+ at step (\d+)", log))
    (resumed,) = set(re.findall(r"Resuming from \S+ \(epoch \d+, step (\d+)", log))
    assert saved == {resumed} and int(resumed) >= batches * (reached + 1)
    assert f"Requeued SLURM job {job}" in log
    # the job's log (both attempts: --open-mode=append) is as quiet as a local run
    out = (clone / "logs" / "slurm" / f"cnnzoo-{job}.out").read_text()
    assert out.count("Restoring states from the checkpoint") == 1
    assert not [line for line in out.splitlines() if any(n in line for n in (*NOISE, "sync_dist"))]
