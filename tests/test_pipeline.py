"""The end-to-end workflows of the README: train, re-test, resume, sweep, log, and fail clearly."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnzoo.module import ImageClassifier

ROOT = Path(__file__).resolve().parents[1]
FAST = ["callbacks.rich_progress_bar=null", "callbacks.rich_model_summary=null"]


def run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short default run: LeNet-5 on the bundled MNIST sample, 2 epochs."""
    run_dir = tmp_path_factory.mktemp("run")
    run("train.py", f"hydra.run.dir={run_dir}", "trainer.max_epochs=2", *FAST)
    return run_dir


def test_default_run_learns_and_records_itself(trained: Path) -> None:
    record = summary(trained)
    assert record["status"] == "completed"
    assert record["metrics"]["test/acc"] > 0.8  # chance is 0.1
    assert record["metrics"]["val/acc_best"] >= record["metrics"]["val/acc"] - 1e-6
    with open(trained / "csv" / "version_0" / "metrics.csv") as f:
        losses = [
            float(row["train/loss_epoch"])
            for row in csv.DictReader(f)
            if row.get("train/loss_epoch")
        ]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert (trained / "checkpoints" / "best.ckpt").is_file()
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert (trained / ".hydra" / "config.yaml").is_file()


def test_checkpoint_holds_plain_data_and_reproduces_outputs(trained: Path) -> None:
    path = trained / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # no pickled modules
    assert checkpoint["hyper_parameters"]["net"]["_target_"] == "cnnzoo.models.lenet.LeNet5"
    model = ImageClassifier.load_from_checkpoint(path, map_location="cpu").eval()
    twin = ImageClassifier(**checkpoint["hyper_parameters"]).eval()
    twin.load_state_dict(checkpoint["state_dict"])
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))


def test_eval_reproduces_the_test_accuracy_of_training(trained: Path, tmp_path: Path) -> None:
    run(
        "eval.py", f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}", f"hydra.run.dir={tmp_path}"
    )
    assert summary(tmp_path)["metrics"]["test/acc"] == summary(trained)["metrics"]["test/acc"]


def test_training_resumes_from_last_checkpoint(trained: Path, tmp_path: Path) -> None:
    last = trained / "checkpoints" / "last.ckpt"
    run("train.py", f"ckpt_path={last}", "trainer.max_epochs=3", f"hydra.run.dir={tmp_path}", *FAST)
    resumed = torch.load(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert resumed["epoch"] == 2  # epochs 0 and 1 came from the checkpoint, 2 ran here
    assert summary(tmp_path)["metrics"]["test/acc"] > 0.8


def test_multirun_gives_each_job_a_dir_and_writes_a_summary(tmp_path: Path) -> None:
    run(
        "train.py",
        "-m",
        "model=lenet,mlp",
        "seed=1,2",
        f"paths.log_dir={tmp_path}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        *FAST,
    )
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if (p / "summary.json").is_file())
    assert len(jobs) == 4
    assert len({summary(job)["best_ckpt"] for job in jobs}) == 4
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["overrides"] for row in rows] == [
        "model=lenet seed=1",
        "model=lenet seed=2",
        "model=mlp seed=1",
        "model=mlp seed=2",
    ]
    assert all(row["status"] == "completed" and float(row["test/acc"]) > 0.1 for row in rows)
    assert "| job | overrides | status |" in (sweep / "summary.md").read_text()


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    result = run(
        "train.py",
        "-m",
        "model.net.activation=bogus,relu",
        f"paths.log_dir={tmp_path}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "test=false",
        *FAST,
        check=False,
    )
    assert result.returncode != 0
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    with open(sweep / "summary.csv") as f:
        rows = {row["overrides"]: row for row in csv.DictReader(f)}
    assert rows["model.net.activation=bogus"]["status"] == "failed"
    assert "bogus" in rows["model.net.activation=bogus"]["error"]
    assert rows["model.net.activation=relu"]["status"] == "completed"


def test_wandb_offline_run_holds_the_metrics_and_config(tmp_path: Path) -> None:
    from wandb_records import history, run_info

    run("train.py", "logger=wandb", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}", *FAST)
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    logged = {key for row in history(run_file) for key in row}
    assert {"train/loss_epoch", "val/acc", "val/acc_best", "test/acc"} <= logged
    test_acc = [row["test/acc"] for row in history(run_file) if "test/acc" in row]
    assert test_acc == [pytest.approx(summary(tmp_path)["metrics"]["test/acc"])]
    info = run_info(run_file)
    assert info["group"] == "train" and "logger=wandb" in info["name"]
    assert info["config"]["model"]["net"]["_target_"] == "cnnzoo.models.lenet.LeNet5"
    assert info["config"]["model"]["num_classes"] == 10  # resolved, not "${datamodule:...}"


def test_online_wandb_without_credentials_fails_fast_instead_of_prompting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    result = subprocess.run(
        [sys.executable, "train.py", "logger=wandb", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode != 0
    assert "wandb login" in result.stderr and "logger.wandb.offline=true" in result.stderr


def test_several_loggers_at_once(tmp_path: Path) -> None:
    run(
        "train.py",
        "logger=[csv,tensorboard]",
        "trainer.max_epochs=1",
        "test=false",
        f"hydra.run.dir={tmp_path}",
        *FAST,
    )
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").is_file()
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))


def test_help_and_cfg_show_the_composed_config() -> None:
    help_text = run("train.py", "--help").stdout
    assert "== Configuration groups ==" in help_text and "resnet18" in help_text
    assert "_target_: cnnzoo.models.lenet.LeNet5" in help_text  # the default model, composed
    job = run("train.py", "--cfg", "job", "model=resnet18").stdout
    assert "cnnzoo.models.resnet.ResNet" in job and "${datamodule:num_classes}" in job
    resolved = run("train.py", "--cfg", "job", "--resolve", "model=resnet18").stdout
    assert "num_classes: 10" in resolved and "stem: small" in resolved


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=resnet19"], ["resnet19", "resnet18", "Available options"]),
        (["trainer.max_epochz=3"], ["max_epochz"]),
        (
            ["ckpt_path=/nonexistent/last.ckpt"],
            ["no such checkpoint file", "/nonexistent/last.ckpt"],
        ),
    ],
)
def test_bad_input_ends_in_one_clear_message(args: list[str], expected: list[str]) -> None:
    result = run("train.py", *args, "trainer.max_epochs=1", check=False)
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr
