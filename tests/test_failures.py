"""Failures on purpose: bad values, a diverging loss, SIGTERM, kill -9 mid-epoch and mid-save, an
unwritable or full checkpoint folder, hostile and broken checkpoint files, failing sweep jobs.
Each ends in one clear message and a non-zero exit, and loses nothing that was saved."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from cli import QUIET, SHORT, error_message, run, start, stop, wait_for
from conftest import compose_config, run_training

from cnnzoo import checkpoint
from cnnzoo.checkpoint import CheckpointSaveError, read_checkpoint
from cnnzoo.errors import UserError, user_errors
from cnnzoo.records import read_job_summary, write_job_summary, write_sweep_summary
from cnnzoo.resume import plan_resume


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not valid: expected an integer"),
        (["data.val_size=1.5"], "data.val_size=1.5 is not valid"),
        (["data.val_size=-10"], "data.val_size=-10 is not valid"),
        (["model.optimizer.lr=abc"], "model.optimizer.lr='abc' is not valid: expected a number"),
        (["model.optimizer.lr=-1"], "model.optimizer.lr=-1 is not valid: expected a number >= 0"),
        (["data.batch_size=0"], "data.batch_size=0 is not valid"),
        (["+model.net.activation=bogus"], "model.net: activation='bogus' is not one of: relu"),
        (["+model.net.depth=3"], "model.net: LeNet5.__init__() got an unexpected keyword"),
        (["data=imagefolder", "data.path=/no/such/folder"], "data.path=/no/such/folder: no such"),
        (
            ["model=alexnet", "model.net.stem=imagenet"],
            "the network cannot take 1x28x28 images",
        ),
        (
            ["callbacks.model_checkpoint.monitor=val/accc"],
            "ModelCheckpoint monitors 'val/accc', which is not a metric this run logs",
        ),
    ],
)
def test_bad_values_end_in_one_line_naming_the_key(
    overrides: list[str], expected: str, tmp_path: Path
) -> None:
    with pytest.raises(UserError) as error, user_errors():
        run_training(tmp_path / "run", *SHORT, *overrides)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message.strip()
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained before the check


def test_a_warmup_longer_than_the_run_is_shortened_with_a_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = run_training(tmp_path / "run", *SHORT, "model.scheduler.warmup_steps=1000")
    assert record["metrics"]["val/acc"] > 0
    assert "warmup_steps=1000 is not shorter than the run (10 steps)" in caplog.text


# --- a diverging run ------------------------------------------------------------------------------


def test_a_diverging_run_stops_at_once_and_saves_no_nan_weights(tmp_path: Path) -> None:
    result = run(
        "train",
        *SHORT,
        "model/optimizer=sgd",
        "model.optimizer.lr=1e30",
        f"hydra.run.dir={tmp_path}",
        check=False,
    )
    assert result.returncode == 1
    message = error_message(result)
    assert "the training loss is nan at step" in message and "model.optimizer.lr" in message
    record = summary(tmp_path)
    assert record["status"] == "failed" and "NonFiniteLossError" in record["error"]
    assert not (tmp_path / "checkpoints").exists()  # stopped before the first validation


def test_a_nan_loss_stops_training_within_its_epoch(tmp_path: Path) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from cnnzoo.callbacks import FiniteLoss, NonFiniteLossError
    from cnnzoo.module import ImageClassifier

    model = ImageClassifier(
        net={"_target_": "cnnzoo.models.create_model", "name": "lenet"},
        num_classes=10,
        # one step at this rate sends the weights to inf: the losses after it are nan
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1e38},
    )
    data = TensorDataset(torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    epochs: list[int] = []
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            FiniteLoss(),
            L.pytorch.callbacks.LambdaCallback(
                on_train_epoch_start=lambda trainer, _: epochs.append(trainer.current_epoch)
            ),
        ],
    )
    with pytest.raises(
        NonFiniteLossError, match=r"the training loss is nan at step \d \(epoch 0\)"
    ):
        trainer.fit(model, DataLoader(data, batch_size=8))
    assert epochs == [0] and trainer.global_step == 4  # checked at the epoch's last batch


# --- signals and kills ----------------------------------------------------------------------------

# A training run that kills itself with SIGKILL at a chosen point: `python killed_train.py <args>`
KILL_MID_EPOCH = """
from cnnzoo.module import ImageClassifier

step = ImageClassifier.training_step

def training_step(self, *args):
    if self.global_step == 7:  # the 8th of 15 steps: in epoch 1 of 0-2
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *args)

ImageClassifier.training_step = training_step
"""
KILL_MID_SAVE = """
replace, saves = os.replace, []

def killing_replace(source, destination):
    if str(destination).endswith("last.ckpt"):
        saves.append(destination)
        if len(saves) == 2:  # epoch 1's last.ckpt, written to its temporary file, not renamed
            os.kill(os.getpid(), signal.SIGKILL)
    return replace(source, destination)

os.replace = killing_replace
"""
RUN_TRAIN = """
sys.argv = ["train.py", *sys.argv[1:]]
from cnnzoo.train import main
main()
"""

DETERMINISTIC = (*SHORT, "trainer.max_epochs=3", "trainer.deterministic=true", "test=false")


def killed_run(tmp_path: Path, run_dir: Path, hook: str) -> None:
    script = tmp_path / "killed_train.py"
    script.write_text("import os, signal, sys\n" + hook + RUN_TRAIN)
    result = run(sys.executable, str(script), *DETERMINISTIC, f"hydra.run.dir={run_dir}",
                 check=False)  # fmt: skip
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("unbroken") / "run"
    run_training(out, *DETERMINISTIC)
    return weights(out / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize(
    "hook",
    [pytest.param(KILL_MID_EPOCH, marks=pytest.mark.slow), KILL_MID_SAVE],
    ids=["mid-epoch", "mid-save"],
)
def test_kill_9_then_resume_ends_exactly_where_an_unbroken_run_ends(
    hook: str, unbroken: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    killed_run(tmp_path, run_dir, hook)
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 0  # intact
    # the record written as it started says running; read back, with no process holding the
    # run, it says what happened
    assert summary(run_dir)["status"] == "running"
    killed = read_job_summary(run_dir)
    assert killed is not None and killed["status"] == "interrupted"
    assert killed["error"] == (
        f"pid {summary(run_dir)['pid']} on {socket.gethostname()} ended without recording how "
        "(killed: kill -9, out of memory, a lost node)"
    )
    run("train", *DETERMINISTIC, f"ckpt_path={run_dir}/checkpoints/last.ckpt")
    resumed = weights(run_dir / "checkpoints" / "last.ckpt")
    assert resumed.keys() == unbroken.keys()
    for name in unbroken:
        torch.testing.assert_close(resumed[name], unbroken[name], rtol=0, atol=0, msg=name)
    assert summary(run_dir)["status"] == "completed"  # the same run dir: one record
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
)
def test_a_signal_saves_last_and_exits_as_shells_expect_and_nothing_resumes_silently(
    signum: int, code: int, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = ["trainer.max_epochs=100", *QUIET, "test=false", f"hydra.run.dir={run_dir}"]
    process = start("train", *args)
    wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").is_file())
    returncode, output = stop(process, signum)
    assert returncode == code, output[-3000:]
    assert "Training interrupted: saving" in output
    record = summary(run_dir)
    assert record["status"] == "interrupted"
    interrupted = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert interrupted["global_step"] > 0
    # what the run had when it stopped: the checkpoint to resume from, the last epoch's metrics
    assert record["last_ckpt"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert record["best_ckpt"] == str(run_dir / "checkpoints" / "best.ckpt")
    assert "val/acc" in record["metrics"] and record["train_time_s"] > 0

    # the same run dir again, without ckpt_path: a new run from scratch, not a silent resume
    rerun = run("train", *SHORT, "trainer.max_epochs=1", "test=false", f"hydra.run.dir={run_dir}")
    assert "Restoring states" not in rerun.stdout + rerun.stderr
    # Lightning's lines are printed once, in the job's format, and kept in its log
    assert (rerun.stdout + rerun.stderr).count("Seed set to 42") == 1
    assert "[lightning.fabric.utilities.seed][INFO] - Seed set to 42" in rerun.stdout
    assert "Seed set to 42" in (run_dir / "train.log").read_text()
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 5


# --- checkpoint folders that cannot be written ----------------------------------------------------


def test_an_unwritable_checkpoint_folder_stops_the_run_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoints folder should be")
    dirpath = blocker / "checkpoints"
    with pytest.raises(CheckpointSaveError, match=f"could not save the checkpoint {dirpath}"):
        run_training(tmp_path / "run", *SHORT, f"callbacks.model_checkpoint.dirpath={dirpath}")


# A disk that fills up from epoch 1's checkpoints on, as a real one does: torch.save's writes
# fail with ENOSPC 64 KiB into the file, and torch.save raises a RuntimeError about it
FULL_DISK = """
import builtins, errno, io

real_open, saves = builtins.open, []

class FullDisk(io.FileIO):
    def write(self, data):
        if self.tell() + len(data) > 65536:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)

def open_(file, mode="r", *args, **kwargs):
    if mode == "wb" and str(file).endswith(".tmp") and "checkpoints" in str(file):
        saves.append(file)
        if len(saves) > 2:  # epoch 0's best.ckpt and last.ckpt fit
            return FullDisk(file, "wb")
    return real_open(file, mode, *args, **kwargs)

builtins.open = open_
"""


def test_a_full_disk_mid_save_is_one_message_and_keeps_the_previous_checkpoint(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    script = tmp_path / "full_disk_train.py"
    script.write_text("import os, sys\n" + FULL_DISK + RUN_TRAIN)

    result = run(sys.executable, str(script), *SHORT, "trainer.max_epochs=3", "test=false",
                 f"hydra.run.dir={run_dir}", check=False)  # fmt: skip

    message = error_message(result)  # one line, no traceback
    assert message.startswith(f"could not save the checkpoint {run_dir / 'checkpoints'}/")
    assert ": No space left on device (ENOSPC); nothing was overwritten" in message
    checkpoints = run_dir / "checkpoints"
    assert not list(checkpoints.glob(".*.tmp"))  # the partial file is gone, its space free
    assert read_checkpoint(checkpoints / "last.ckpt")["epoch"] == 0  # intact and loadable
    record = summary(run_dir)
    assert (record["status"], record["exit_code"]) == ("failed", 1)
    assert record["error"] == f"CheckpointSaveError: {message}"


def test_a_failed_record_write_leaves_the_previous_record_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_job_summary(tmp_path, {"status": "completed"})
    before = (tmp_path / "summary.json").read_bytes()
    write_text = Path.write_text

    def disk_full(path: Path, text: str, *args: Any, **kwargs: Any) -> int:
        write_text(path, text[:10], *args, **kwargs)  # a part of it, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(UserError) as failed:
        write_job_summary(tmp_path, {"status": "failed"})

    assert str(failed.value) == (
        f"could not write {tmp_path / 'summary.json'}: No space left on device (ENOSPC)"
    )
    assert (tmp_path / "summary.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# The disk fills up once the run has trained: every summary.json written after the first (the
# `running` record written as the run starts) fails with ENOSPC
RECORD_DISK_FULL = """
import errno, pathlib

write_text, records = pathlib.Path.write_text, []

def write_text_(path, text, *args, **kwargs):
    if ".summary.json." in path.name:
        records.append(path)
        if len(records) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write_text(path, text, *args, **kwargs)

pathlib.Path.write_text = write_text_
"""
FAIL_IN_TRAINING = """
from cnnzoo.module import ImageClassifier

def training_step(self, *args):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")

ImageClassifier.training_step = training_step
"""


@pytest.mark.parametrize("fails", [False, True], ids=["completed", "failed"])
def test_a_record_that_cannot_be_written_is_never_a_success_nor_hides_the_jobs_error(
    fails: bool, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    script = tmp_path / "record_disk_full_train.py"
    script.write_text("import os, sys\n" + RECORD_DISK_FULL + (FAIL_IN_TRAINING if fails else "")
                      + RUN_TRAIN)  # fmt: skip

    result = run(sys.executable, str(script), *SHORT, "trainer.max_epochs=1",
                 f"hydra.run.dir={run_dir}", check=False)  # fmt: skip

    record_error = f"could not write {run_dir / 'summary.json'}: No space left on device (ENOSPC)"
    if fails:  # the job's own error, and the record's logged beside it
        assert result.returncode == 1
        assert "CUDA error: an illegal memory access" in result.stderr
        logged = f"The job's record could not be written either: {record_error}"
        assert logged in result.stdout and logged in (run_dir / "train.log").read_text()
    else:
        assert error_message(result) == (
            f"the run completed, but its record could not be written: {record_error} "
            f"(its checkpoints are in {run_dir / 'checkpoints'})"
        )
        assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    # what the disk kept: the record of a run that started, never one that says it completed
    assert summary(run_dir)["status"] == "running"
    assert not list(run_dir.glob(".*.tmp"))


def test_only_the_temporary_files_of_gone_processes_are_removed(tmp_path: Path) -> None:
    host, old = socket.gethostname(), time.time() - checkpoint.STALE_FOREIGN_TEMP_S - 60
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    temps = {
        "live": f".last.ckpt.{host}.{os.getpid()}.tmp",  # a save in progress here
        "gone": f".last.ckpt.{host}.{gone.pid}.tmp",  # a save killed here
        "elsewhere": ".last.ckpt.node-7.cluster.org.1.tmp",  # another host's, recent
        "elsewhere-old": ".best.ckpt.node-7.cluster.org.1.tmp",  # another host's, for hours
    }
    for name in temps.values():
        (tmp_path / name).write_bytes(b"partial")
    os.utime(tmp_path / temps["elsewhere-old"], (old, old))

    removed = checkpoint.remove_stale_temp_files(tmp_path)

    assert sorted(p.name for p in removed) == sorted([temps["gone"], temps["elsewhere-old"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([temps["live"], temps["elsewhere"]])


def test_a_read_only_output_root_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "a-file"  # as unwritable as a read-only mount, even for root
    root.write_text("not a folder")
    result = run("train", *SHORT, check=False, extra_env={"CNNZOO_ROOT": str(root)})
    message = error_message(result)
    assert message.startswith(f"Error: cannot write the output folder {root}/logs/")
    assert message.endswith("choose a writable one with CNNZOO_ROOT=<folder>, "
                            "paths.log_dir=<folder> or hydra.run.dir=<folder>")  # fmt: skip
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


# --- trackers that cannot write -------------------------------------------------------------------


@pytest.mark.slow
def test_wandb_under_a_read_only_home_warns_and_the_run_completes(tmp_path: Path) -> None:
    home = tmp_path / "a-file"  # W&B stages tables under ~/.local/share/wandb
    home.write_text("not a folder")
    run_dir = tmp_path / "run"
    result = run("train", *SHORT, "trainer.max_epochs=1", "logger=wandb",
                 f"hydra.run.dir={run_dir}", extra_env={"HOME": str(home / "home")})  # fmt: skip
    assert result.returncode == 0
    assert "W&B could not record test/per_class (PermissionError: " in result.stdout
    assert summary(run_dir)["status"] == "completed"


def test_a_tensorboard_folder_that_cannot_be_written_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    record = run_training(tmp_path / "run", *SHORT, "trainer.max_epochs=1",
                          "logger=[csv,tensorboard]",
                          f"logger.tensorboard.save_dir={blocker}/tb")  # fmt: skip
    assert "test/acc" in record["metrics"]
    assert f"TensorBoardLogger cannot write to {blocker}/tb (" in caplog.text
    assert (tmp_path / "run" / "csv" / "version_0" / "metrics.csv").is_file()


# --- checkpoint files from elsewhere --------------------------------------------------------------


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("good") / "run"
    run_training(out, *SHORT, "trainer.max_epochs=1", "test=false")
    return out / "checkpoints" / "last.ckpt"


def test_a_checkpoint_naming_foreign_code_is_refused_and_runs_nothing(
    good_checkpoint: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    checkpoint = torch.load(good_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["net"] = {
        "_target_": "builtins.open",
        "file": str(victim),
        "mode": "w",
    }
    hostile = tmp_path / "hostile.ckpt"
    torch.save(checkpoint, hostile)
    (tmp_path / "digit.png").write_bytes(b"")
    result = run("predict", f"ckpt_path={hostile}", f"inputs={tmp_path}/digit.png", check=False)
    message = error_message(result)
    assert "refusing to load it" in message and "builtins.open" in message
    from cnnzoo.eval import evaluate

    cfg = compose_config(f"ckpt_path={hostile}", f"paths.output_dir={tmp_path}", config="eval")
    with pytest.raises(UserError, match="refusing to load it"):
        evaluate(cfg)
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["truncated", "empty", "state_dict", "not_a_checkpoint"])
def test_a_broken_checkpoint_file_is_one_line(
    kind: str, good_checkpoint: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"{kind}.ckpt"
    data = good_checkpoint.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "state_dict":
        torch.save(torch.load(good_checkpoint, weights_only=True)["state_dict"], path)
    else:
        path.write_text("hello")
    with pytest.raises(UserError) as error:
        read_checkpoint(path)
    expected = {
        "truncated": "cannot be read as a checkpoint",
        "empty": "is empty",
        "state_dict": "plain state dict",
        "not_a_checkpoint": "cannot be read as a checkpoint",
    }[kind]
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_eval_of_a_truncated_checkpoint_is_one_message(
    good_checkpoint: Path, tmp_path: Path
) -> None:
    from cnnzoo.eval import evaluate

    path = tmp_path / "truncated.ckpt"
    path.write_bytes(good_checkpoint.read_bytes()[:1000])
    cfg = compose_config(f"ckpt_path={path}", f"paths.output_dir={tmp_path}", config="eval")
    with pytest.raises(UserError, match="cannot be read as a checkpoint"):
        evaluate(cfg)


def test_resuming_from_an_unreadable_last_checkpoint_falls_back_to_the_newest_good_one(
    good_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "best.ckpt").write_bytes(good_checkpoint.read_bytes())
    (checkpoints / "last.ckpt").write_bytes(good_checkpoint.read_bytes()[:5000])
    plan = plan_resume(str(checkpoints / "last.ckpt"), task_dir=tmp_path)
    assert plan is not None and plan.checkpoint == checkpoints / "best.ckpt"
    assert any("resuming instead from" in note for note in plan.notes)
    (checkpoints / "best.ckpt").unlink()
    with pytest.raises(UserError, match="cannot resume: .*last.ckpt cannot be read"):
        plan_resume(str(checkpoints / "last.ckpt"), task_dir=tmp_path)


# --- sweeps ---------------------------------------------------------------------------------------


@pytest.mark.slow  # two DDP jobs of two processes each: ~55 s, like test_scale's DDP runs
def test_a_failing_job_in_a_ddp_sweep_is_recorded_and_the_next_job_runs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run(
        "train",
        "-m",
        "trainer=ddp_cpu",
        "+model.net.activation=bogus,relu",
        *SHORT,
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    failed, completed = summary(sweep / "0"), summary(sweep / "1")
    assert failed["status"] == "failed" and "activation='bogus'" in failed["error"]
    assert completed["status"] == "completed" and completed["metrics"]["test/acc"] > 0.1
    assert (sweep / "1" / "train_ddp_process_1.log").is_file()  # rank 1 ran in the job's dir
    # the report is written with the jobs that finished, and each error is one table line
    assert (sweep / "report" / "report.md").is_file()
    rows = (sweep / "summary.md").read_text().splitlines()
    assert len(rows) == 4  # header, rule, two jobs
    # no process of the sweep is left behind
    leftovers = [
        line
        for line in os.popen("ps -eo args").read().splitlines()
        if str(sweep) in line and "ps -eo" not in line
    ]
    assert not leftovers


def test_a_multi_line_error_is_one_row_of_the_sweep_table(tmp_path: Path) -> None:
    for job, error in (("0", "ValueError: first\n  second line | with a pipe"), ("1", None)):
        (tmp_path / job).mkdir()
        record = {"overrides": [f"seed={job}"], "status": "failed" if error else "completed"}
        (tmp_path / job / "summary.json").write_text(json.dumps({**record, "error": error}))
    write_sweep_summary(tmp_path)
    lines = (tmp_path / "summary.md").read_text().splitlines()
    assert len(lines) == 4
    assert "first ⏎ second line \\| with a pipe" in lines[2]


def test_compose_checks_happen_before_any_work() -> None:
    cfg = compose_config("trainer.max_epochs=0")
    from cnnzoo.config import validate

    with pytest.raises(UserError, match="trainer.max_epochs=0 is not valid"):
        validate(cfg)


def test_logger_null_on_the_command_line_means_no_logger() -> None:
    from cnnzoo.console import prepare_command_line

    argv = ["train.py", "logger=null", "callbacks=none", "model=lenet", "logger.csv.name=x"]
    prepare_command_line(argv)
    assert argv == ["train.py", "~logger", "~callbacks", "model=lenet", "logger.csv.name=x"]


@pytest.mark.slow  # two DDP trials of 2 processes each
def test_an_optuna_search_runs_ddp_trials_with_only_rank_0_at_the_study(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run("train", "-m", "hparams_search=mnist_optuna", "hydra.sweeper.n_trials=2",
        "trainer=ddp_cpu", *SHORT, f"hydra.sweep.dir={sweep}")  # fmt: skip
    import optuna

    study = optuna.load_study(study_name="mnist_optuna", storage=f"sqlite:///{sweep}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.intermediate_values for t in study.trials)  # rank 0 reported every epoch


class TinyNet(torch.nn.Sequential):
    """A user's own network, named by its `_target_` in a run's config."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(torch.nn.Flatten(), torch.nn.Linear(28 * 28, num_classes))


def test_a_users_own_network_trains_resumes_and_is_trusted_only_when_named(
    tmp_path: Path,
) -> None:
    net = ("~model.net", "+model.net._target_=test_failures.TinyNet")
    record = run_training(tmp_path / "run", *SHORT, *net)
    assert record["metrics"]["test/acc"] > 0  # the run tested its own checkpoint
    with pytest.raises(UserError, match="trusted_targets"):
        read_checkpoint(record["best_ckpt"])
    assert read_checkpoint(record["best_ckpt"], trusted=["test_failures."])
    # the run's own config names the net: resuming from its checkpoint trusts it too
    resumed = run_training(
        tmp_path / "run", *SHORT, *net, "trainer.max_epochs=3", f"ckpt_path={record['last_ckpt']}"
    )
    assert read_checkpoint(resumed["last_ckpt"], trusted=["test_failures."])["epoch"] == 2
