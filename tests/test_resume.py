"""Resuming: `ckpt_path=last` (or a run's checkpoint file) continues that run — in its own run dir,
with one record: its checkpoints, CSV log (the same metrics.csv), TensorBoard log (the same
folder, purged from the checkpoint's step), summary, train.log and W&B run. Exactness across a
kill is in test_failures.py."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch
from cli import SHORT, error_message, run
from conftest import compose_config
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from wandb_records import run_info

from cnnzoo.checkpoint import read_checkpoint
from cnnzoo.errors import UserError
from cnnzoo.resume import find_last_checkpoint, plan_resume


def test_ckpt_path_last_continues_the_newest_run_in_its_own_dir(tmp_path: Path) -> None:
    args = [*SHORT, "logger=[csv,wandb]", f"paths.log_dir={tmp_path}"]
    run("train", *args, "trainer.max_epochs=1")
    (run_dir,) = (tmp_path / "debug" / "runs").iterdir()
    first_id = (run_dir / "wandb_run_id").read_text().strip()
    first_part = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["train_time_s"]

    run("train", *args, "trainer.max_epochs=2", "ckpt_path=last")

    assert list((tmp_path / "debug" / "runs").iterdir()) == [run_dir]  # no second run dir
    record = json.loads((run_dir / "summary.json").read_text())
    assert record["status"] == "completed"
    assert record["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1
    # the training time counts both parts, as an unbroken run's would
    assert 0 < first_part < record["train_time_s"]
    # one CSV log: the first part's rows kept, the second's appended, each epoch once
    assert [p.name for p in (run_dir / "csv").iterdir()] == ["version_0"]
    assert sorted(p.name for p in (run_dir / "csv/version_0").iterdir()) == [
        "hparams.yaml",
        "metrics.csv",
    ]
    with open(run_dir / "csv/version_0/metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["epoch"]) for row in rows if row["val/acc"]] == [0, 1]
    assert [float(row["epoch"]) for row in rows if row["train/loss_epoch"]] == [0, 1]
    assert [row["step"] for row in rows if row["model/params"]] == ["0"]  # logged at the start
    # the best val/acc goes on from the first part's: never below an earlier epoch's val/acc
    val_acc = [float(row["val/acc"]) for row in rows if row["val/acc"]]
    best = [float(row["val/acc_best"]) for row in rows if row["val/acc_best"]]
    assert best == [max(val_acc[: i + 1]) for i in range(len(val_acc))]
    assert record["metrics"]["val/acc_best"] == pytest.approx(max(val_acc))
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
        plan_resume("last", task_dir=tmp_path / "empty")


def _csv_logger_node(save_dir: Path) -> DictConfig:
    node = {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(save_dir)}
    return OmegaConf.create({"csv": {**node, "name": "csv", "prefix": ""}})


def _write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", "train/loss_step"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("left_by", ["a killed run", "a resume killed while writing back"])
def test_a_resumed_csv_log_keeps_the_rows_before_the_checkpoint(
    tmp_path: Path, left_by: str
) -> None:
    from cnnzoo.trackers import csv_before_resume, instantiate_loggers

    folder = tmp_path / "csv" / "version_0"
    folder.mkdir(parents=True)  # a resume killed while writing back leaves it empty
    # steps 0-9 logged; the checkpoint resumed from was saved after 6 steps
    path = folder / "metrics.csv" if left_by == "a killed run" else csv_before_resume(folder)
    rows = [
        {"epoch": step // 4, "step": step, "train/loss_step": 1 / (step + 1)} for step in range(10)
    ]
    _write_rows(path, rows)

    (logger,) = instantiate_loggers(_csv_logger_node(tmp_path), resume_step=6)

    assert logger.log_dir == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.csv"]  # written back at once
    assert not csv_before_resume(folder).exists()
    with open(folder / "metrics.csv", newline="") as f:
        kept = list(csv.DictReader(f))
    assert [int(row["step"]) for row in kept] == [0, 1, 2, 3, 4, 5]
    assert [float(row["train/loss_step"]) for row in kept] == pytest.approx(
        [1 / (step + 1) for step in range(6)]
    )
    logger.log_metrics({"train/loss_step": 0.5}, step=6)
    logger.save()
    with open(folder / "metrics.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == [0, 1, 2, 3, 4, 5, 6]


def test_a_resumed_tensorboard_log_continues_its_folder_from_the_checkpoints_step(
    tmp_path: Path,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnzoo.trackers import instantiate_loggers

    node = {
        "_target_": "lightning.pytorch.loggers.TensorBoardLogger",
        "save_dir": str(tmp_path / "tensorboard"),
        "name": None,
        "default_hp_metric": False,
    }
    cfg = OmegaConf.create({"tensorboard": node})
    (first,) = instantiate_loggers(cfg)
    for step in range(10):  # a killed run logged steps 0-9; its checkpoint is from step 6
        first.log_metrics({"train/loss_step": 1.0}, step=step)
    first.finalize("failed")

    (resumed,) = instantiate_loggers(cfg, resume_step=6)
    for step in (6, 7):
        resumed.log_metrics({"train/loss_step": 0.5}, step=step)
    resumed.finalize("success")

    assert [p.name for p in (tmp_path / "tensorboard").iterdir()] == ["version_0"]
    events = EventAccumulator(str(tmp_path / "tensorboard" / "version_0"))
    events.Reload()
    shown = [(e.step, e.value) for e in events.Scalars("train/loss_step")]
    assert shown == [(step, 1.0) for step in range(6)] + [(6, 0.5), (7, 0.5)]


# --- a resume that fails leaves the run as it was; one that starts takes the run's own settings ---


def _record(run_dir: Path) -> dict[str, bytes]:
    files = [run_dir / "summary.json", run_dir / "train.log", *(run_dir / ".hydra").glob("*")]
    files += list((run_dir / "csv").rglob("*.csv"))
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in files}


def test_a_resume_that_fails_its_checks_leaves_the_run_byte_identical_and_one_that_passes_takes_its_settings(  # noqa: E501
    tmp_path: Path,
) -> None:
    args = [*SHORT, f"paths.log_dir={tmp_path}"]
    run("train", *args, "model=resnet20", "+model.net.layers=[1,1,1]", "trainer.max_epochs=1")
    (run_dir,) = (tmp_path / "debug" / "runs").iterdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    before = _record(run_dir)

    # another network, then another optimizer: one line naming what differs, exit 1
    net = run("train", *args, f"ckpt_path={ckpt}", "model=lenet", check=False)
    optimizer = run("train", *args, f"ckpt_path={ckpt}", "model/optimizer=sgd", check=False)
    # the same network with other settings: the message names the setting, not just a weight
    deeper = run("train", *args, f"ckpt_path={ckpt}", "+model.net.layers=[2,2,2]", check=False)
    assert (
        "settings that differ: model.net.layers: [1, 1, 1] in the checkpoint, [2, 2, 2] here"
        in error_message(deeper)
    )
    # a key or an option that does not exist: Hydra's message, as without ckpt_path
    typo = run("train", *args, f"ckpt_path={ckpt}", "trainer.max_epochz=4", check=False)
    assert "Could not override 'trainer.max_epochz'" in error_message(typo)
    missing = run("train", *args, f"ckpt_path={ckpt}", "model=resnet19", check=False)
    assert "Could not find 'model/resnet19'" in error_message(missing)

    assert (
        "its network differs from this run's (the checkpoint's is resnet20, this run's lenet"
        in error_message(net)
    )
    assert "its optimizer is Adam, this run's is SGD" in error_message(optimizer)
    assert "state_dict" not in net.stderr and len(net.stderr) < 2000
    assert _record(run_dir) == before  # summary, config, logs: byte-identical
    attempts = sorted((run_dir / "attempts").iterdir())
    assert len(attempts) == 3
    for attempt in attempts:  # each failed attempt has its own record
        record = json.loads((attempt / "attempt.json").read_text())
        assert record["status"] == "failed" and "cannot resume" in record["error"]
        assert (attempt / ".hydra" / "config.yaml").is_file()

    # without repeating model=: the run's own settings apply, the run continues in its dir
    run("train", *args, f"ckpt_path={ckpt}", "trainer.max_epochs=2")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed_from"] == str(ckpt)
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert config.model.net.name == "resnet20" and list(config.model.net.layers) == [1, 1, 1]
    assert config.trainer.max_epochs == 2
    assert "its own settings apply unless overridden: " in (run_dir / "train.log").read_text()
    assert read_checkpoint(ckpt)["epoch"] == 1


def test_one_writer_per_run_dir(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import os
    import socket

    from cnnzoo.records import RunLock, RunLockedError

    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released cleanly: taken again without a word
        pass
    assert "taken over" not in caplog.text
    # a holder killed with its lock held leaves its name in the file; the kernel freed the lock
    (tmp_path / ".lock").write_text('{"pid": 999999, "host": "gone"}')
    with RunLock(tmp_path):
        pass
    assert "last held by pid 999999 on gone, which is gone: taken over" in caplog.text


def test_a_running_record_is_read_as_running_only_while_its_writer_holds_the_run(
    tmp_path: Path,
) -> None:
    from cnnzoo.records import RunLock, read_job_summary, write_job_summary

    write_job_summary(tmp_path, {"status": "running", "pid": 4242, "host": "node-7"})
    with RunLock(tmp_path):
        record = read_job_summary(tmp_path)
        assert record is not None and record["status"] == "running"
    record = read_job_summary(tmp_path)
    assert record is not None and record["status"] == "interrupted"
    assert record["error"].startswith("pid 4242 on node-7 ended without recording how")


def test_a_second_process_on_a_running_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    import subprocess

    from cli import command, env

    args = [*SHORT, f"paths.log_dir={tmp_path}"]
    run("train", *args, "trainer.max_epochs=1")
    (run_dir,) = (tmp_path / "debug" / "runs").iterdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    first = subprocess.Popen(
        command("train", *args, f"ckpt_path={ckpt}", "trainer.max_epochs=1000"),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while str(first.pid) not in (run_dir / ".lock").read_text():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        second = run("train", *args, f"ckpt_path={ckpt}", "trainer.max_epochs=3", check=False)
    finally:
        first.terminate()
        first.wait(timeout=60)
    message = error_message(second)
    assert f"{run_dir} is being written by pid {first.pid}" in message
    with open(run_dir / "csv/version_0/metrics.csv", newline="") as f:
        epochs = [row["epoch"] for row in csv.DictReader(f) if row["val/acc"]]
    assert len(epochs) == len(set(epochs))  # no epoch logged twice


def test_the_best_val_acc_goes_on_from_the_checkpoint_a_run_resumes() -> None:
    """A resumed run's ``val/acc_best`` (the default ``optimized_metric``) starts from its
    checkpoint's best, not from the first epoch it validates after the resume."""
    cfg = compose_config(*SHORT)
    first = instantiate(cfg.model, _recursive_=False, _convert_="all")
    first.metrics["val_acc_best"].update(torch.tensor(0.9))
    checkpoint: dict = {}
    first.on_save_checkpoint(checkpoint)

    resumed = instantiate(cfg.model, _recursive_=False, _convert_="all")
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_start()
    best = resumed.metrics["val_acc_best"]
    best.update(torch.tensor(0.5))  # a worse epoch after the resume
    assert float(best.compute()) == pytest.approx(0.9)
