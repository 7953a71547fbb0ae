"""A sweep stopped halfway: its report lists what ran and what never started; run again in the
same sweep dir, it skips the completed jobs and resumes the interrupted one from its own
checkpoint — never another job's (``ckpt_path=last`` in a multirun is the job's own)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from cli import SHORT, command, env, run

from cnnzoo.checkpoint import read_checkpoint

# three jobs long enough to be stopped in the middle of the second
SWEEP = ("-m", *SHORT, "trainer.max_epochs=15", "trainer.limit_val_batches=1", "seed=1,2,3")


def _summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def test_a_stopped_sweep_reports_what_never_ran_and_a_rerun_finishes_it(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = [*SWEEP, f"hydra.sweep.dir={sweep}", "test=false"]
    # job 0 short, the others long; SIGTERM once job 1 has saved an epoch
    process = subprocess.Popen(
        command("train", *args),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (sweep / "1" / "checkpoints" / "last.ckpt").is_file():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)

    assert process.returncode == 143, output[-3000:]
    plan = json.loads((sweep / "jobs.json").read_text())
    assert sorted(plan) == ["0", "1", "2"]
    table = (sweep / "summary.md").read_text()
    assert _summary(sweep / "0")["status"] == "completed"
    assert _summary(sweep / "1")["status"] == "interrupted"
    assert "| 2 | seed=3 | not started |" in table
    assert (sweep / "report" / "report.md").is_file()
    assert "rerun it with hydra.sweep.dir=" in output
    first_job = (sweep / "0" / "summary.json").read_bytes()
    stopped_at = read_checkpoint(sweep / "1" / "checkpoints" / "last.ckpt")["global_step"]

    rerun = run("train", *args)  # the same command, in the same sweep dir
    assert rerun.returncode == 0
    assert (sweep / "0" / "summary.json").read_bytes() == first_job  # skipped, record kept
    skipped = "Job 0 completed in an earlier run of this sweep: skipped"
    assert skipped in (sweep / "0" / "train.log").read_text()
    resumed = _summary(sweep / "1")
    assert resumed["status"] == "completed"
    assert resumed["resumed_from"] == str(sweep / "1" / "checkpoints" / "last.ckpt")
    resuming = "Job 1 was interrupted in an earlier run of this sweep: resuming it from its own"
    assert resuming in (sweep / "1" / "train.log").read_text()
    assert stopped_at > 0
    assert _summary(sweep / "2")["status"] == "completed"
    assert "not started" not in (sweep / "summary.md").read_text()


def test_ckpt_path_last_in_a_sweep_is_each_jobs_own_never_another_runs(tmp_path: Path) -> None:
    logs = [f"paths.log_dir={tmp_path}"]
    run("train", *SHORT, *logs, "trainer.max_epochs=1")  # a run of the same task, elsewhere
    sweep = tmp_path / "sweep"
    run("train", "-m", *SHORT, *logs, "seed=1,2", "ckpt_path=last", f"hydra.sweep.dir={sweep}")
    for job in ("0", "1"):  # nothing of their own yet: both start fresh
        record = _summary(sweep / job)
        assert record["status"] == "completed" and "resumed_from" not in record
