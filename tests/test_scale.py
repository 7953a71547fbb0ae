"""Scale-out on CPU: DDP under a Hydra multirun, and two torchrun "nodes" on localhost."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
from cli import run, start

# 3 epochs of 5 batches (global batch 128: 64 per process)
SHORT = ["debug=limit", "callbacks.rich_progress_bar=null"]


# test_failures.py runs a DDP sweep by default (one job failing, one completing)
@pytest.mark.slow
def test_multirun_of_ddp_jobs_gives_one_run_per_job(tmp_path: Path) -> None:
    result = run("train", "-m", "trainer=ddp_cpu", "seed=1,2", *SHORT, f"paths.log_dir={tmp_path}")
    (sweep,) = (tmp_path / "debug" / "multiruns").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.name.isdigit())
    assert jobs == ["0", "1"], "the ranks started sweeps of their own"
    for job in jobs:
        record = json.loads((sweep / job / "summary.json").read_text())
        assert record["status"] == "completed"
        assert sorted(os.listdir(sweep / job / "checkpoints")) == ["best.ckpt", "last.ckpt"]
        # rank 1 logged into the job's directory, not a directory of its own
        assert (sweep / job / "train_ddp_process_1.log").is_file()
        assert record["metrics"]["test/acc"] > 0.3  # 10 classes: chance is 0.1
    logged = re.findall(r"rank (\d) metrics: (\{.*\})", result.stdout + result.stderr)
    assert sorted(rank for rank, _ in logged) == ["0", "0", "1", "1"]


@pytest.mark.slow
def test_a_ddp_run_resumes_in_its_own_dir_with_one_writer(tmp_path: Path) -> None:
    args = ["trainer=ddp_cpu", *SHORT, f"paths.log_dir={tmp_path}", "test=false"]
    run("train", *args, "trainer.max_epochs=1")
    (run_dir,) = (tmp_path / "debug" / "runs").iterdir()
    # the resume's ranks take the run's own settings and write into the run's dir
    run("train", *args[1:], f"ckpt_path={run_dir}/checkpoints/last.ckpt", "trainer.max_epochs=2")
    assert [p.name for p in (tmp_path / "debug" / "runs").iterdir()] == [run_dir.name]
    record = json.loads((run_dir / "summary.json").read_text())
    assert record["status"] == "completed" and record["resumed_from"].endswith("last.ckpt")
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "ddp" in config  # trainer=ddp_cpu came from the run's own overrides
    assert sorted(p.name for p in (run_dir / "csv").iterdir()) == ["version_0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_nodes_agree_on_the_metrics(tmp_path: Path) -> None:
    port = _free_port()
    nodes = [
        start(
            "-m torch.distributed.run",
            "--nnodes=2",
            "--nproc-per-node=1",
            f"--node-rank={rank}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            "train.py",
            *SHORT,
            "trainer=ddp_cpu",
            "trainer.devices=1",
            "trainer.num_nodes=2",
            f"hydra.run.dir={tmp_path / f'node{rank}'}",
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-3000:]
    metrics = {}
    for output in outputs:
        for rank, logged in re.findall(r"rank (\d) metrics: (\{.*\})", output):
            metrics[rank] = json.loads(logged)
    assert metrics.keys() == {"0", "1"}
    for name in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert metrics["0"][name] == pytest.approx(metrics["1"][name]), name
    # only global rank 0 writes checkpoints and the run record
    assert (tmp_path / "node0" / "summary.json").is_file()
    assert not (tmp_path / "node1" / "summary.json").exists()


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_in_its_own_process(tmp_path: Path) -> None:
    run("train", "-m", "hydra/launcher=local", "seed=1,2", "debug=fdr",
        "callbacks.rich_progress_bar=null", f"paths.log_dir={tmp_path}")  # fmt: skip
    (sweep,) = (tmp_path / "debug" / "multiruns").iterdir()
    for job in ("0", "1"):
        assert json.loads((sweep / job / "summary.json").read_text())["status"] == "completed"
    assert (sweep / ".submitit").is_dir()
