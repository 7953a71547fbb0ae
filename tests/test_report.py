"""`python -m cnnzoo.report <dir>` turns the runs under a directory into one table and plots, and
a sweep ends with that report in its directory."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
from cli import run
from hydra import compose, initialize_config_module

from cnnzoo.config import CONFIG_MODULE
from cnnzoo.models.stats import config_cost
from cnnzoo.report import run_labels, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _rows(report: Path) -> dict[str, dict[str, str]]:
    with open(report / "report.csv", newline="") as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def _is_figure(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def _fake_run(run_dir: Path, overrides: list[str], metrics: dict[str, float], **csv_stats) -> None:
    """What a finished job leaves: summary.json and the CSV logger's metrics.csv."""
    run_dir.mkdir(parents=True)
    record = {"overrides": overrides, "status": "completed", "metrics": metrics}
    (run_dir / "summary.json").write_text(json.dumps(record))
    metrics_csv = run_dir / "csv" / "version_0" / "metrics.csv"
    metrics_csv.parent.mkdir(parents=True)
    lines = ["epoch,step,val/acc,val/loss,model/params,model/flops"]
    if csv_stats:
        lines.append(f",0,,,{csv_stats['params']},{csv_stats['flops']}")
    lines += [f"{epoch},{epoch},{0.5 + epoch / 10},{1 - epoch / 10},," for epoch in range(3)]
    metrics_csv.write_text("\n".join(lines) + "\n")


def check_sweep_report(sweep: Path) -> None:
    """What a sweep of `model=lenet,mlp` leaves in its report (the sweep: test_dashboard.py)."""
    report = sweep / "report"
    for name in ("acc_vs_params.png", "acc_vs_flops.png", "learning_curves.png"):
        assert _is_figure(report / name), name
    rows = _rows(report)
    assert set(rows) == {"0", "1"}
    assert [rows[r]["label"] for r in ("0", "1")] == ["model=lenet", "model=mlp"]
    assert int(rows["0"]["params"]) == 61_706  # LeNet-5 on 1 x 28 x 28, 10 classes
    assert int(rows["1"]["flops"]) > 0
    assert all(
        0 <= float(row["test/acc"]) <= 1 and row["status"] == "completed" for row in rows.values()
    )


def test_the_command_writes_the_report_of_every_run_under_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnzoo.report import main

    for job, model in (("0", "lenet"), ("1", "mlp")):
        _fake_run(tmp_path / "sweep" / job, [f"model={model}", "seed=1"], {"test/acc": 0.9})
    main([str(tmp_path)])  # a parent dir works too
    assert "report.md" in capsys.readouterr().out
    assert "model=lenet" in (tmp_path / "report" / "report.md").read_text()


def test_runs_are_labelled_by_what_the_sweep_varied() -> None:
    labels, shared = run_labels(
        [
            ["model=lenet", "seed=1", "debug=limit", "+optuna_trial=0"],
            ["model=mlp", "seed=1", "debug=limit", "+optuna_trial=1"],
            ["model.optimizer.lr=0.0012345678", "seed=1", "debug=limit", "hydra.job.num=2"],
            # resumed after a requeue: how it ran, not what it is
            ["model=mlp", "seed=1", "debug=limit", "ckpt_path=last"],
        ]
    )
    assert labels == [["model=lenet"], ["model=mlp"], ["lr=0.00123"], ["model=mlp"]]
    assert shared == ["seed=1", "debug=limit"]
    # the first run listed was resumed: the others did not share its checkpoint
    _, shared = run_labels([["seed=1", "ckpt_path=/runs/a/last.ckpt"], ["seed=2"]])
    assert shared == []


def test_the_report_reads_the_recorded_size_and_cost_and_never_rebuilds_a_network(
    tmp_path: Path,
) -> None:
    metrics = {"test/acc": 0.9, "model/params": 1234.0, "model/flops": 5678.0}
    _fake_run(tmp_path / "0", ["model=lenet", "seed=1"], metrics)  # from summary.json
    _fake_run(tmp_path / "1", ["model=lenet", "seed=2"], {"test/acc": 0.8}, params=1234, flops=5678)
    _fake_run(tmp_path / "2", ["model=mlp", "seed=1"], {"test/acc": 0.7})  # no record of them
    # a saved config that cannot be built: the report must not try
    (tmp_path / "2" / ".hydra").mkdir()
    (tmp_path / "2" / ".hydra" / "config.yaml").write_text("model: {net: {_target_: nowhere}}\n")

    rows = _rows(write_report(tmp_path))

    assert [(rows[r]["params"], rows[r]["flops"]) for r in "012"] == [
        ("1234", "5678"),
        ("1234", "5678"),
        ("", ""),
    ]
    assert [rows[r]["label"] for r in "012"] == [
        "model=lenet seed=1",
        "model=lenet seed=2",
        "model=mlp seed=1",
    ]
    assert _is_figure(tmp_path / "report" / "learning_curves.png")


def test_an_optuna_search_is_reported_with_optunas_plots(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="search", storage=f"sqlite:///{tmp_path}/optuna.db", direction="maximize"
    )
    study.set_user_attr("metric", "val/acc_best")
    for number, (lr, batch_size) in enumerate([(1e-3, 32), (3e-3, 64), (1e-2, 32), (3e-4, 128)]):
        trial = study.ask()
        trial.suggest_float("model.optimizer.lr", 1e-4, 3e-2, log=True)
        trial.suggest_categorical("data.batch_size", [32, 64, 128])
        study.tell(trial, 0.5 + number / 10)
        overrides = [f"model.optimizer.lr={lr}", f"data.batch_size={batch_size}"]
        _fake_run(tmp_path / str(number), [*overrides, f"+optuna_trial={number}"], {})
    report = write_report(tmp_path)

    for name in ("optuna_history", "optuna_importances", "optuna_parallel", "optuna_slice"):
        assert _is_figure(report / f"{name}.png"), name
    assert not (report / "trials.png").exists()
    with open(report / "trials.csv", newline="") as f:
        assert [row["trial"] for row in csv.DictReader(f)] == ["0", "1", "2", "3"]
    assert _rows(report)["1"]["label"] == "lr=0.003 batch_size=64"
    assert "Best trial of search: **3**" in (report / "report.md").read_text()


def test_the_size_budget_counts_the_network_a_config_describes() -> None:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=["model=lenet"])
    assert config_cost(cfg) == (61_706, 833_040)


def test_report_of_a_directory_without_runs_fails_clearly(tmp_path: Path) -> None:
    result = run("-m cnnzoo.report", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "no runs" in result.stderr


def test_damaged_records_are_skipped_naming_them(tmp_path: Path) -> None:
    for job, model in (("0", "lenet"), ("1", "mlp"), ("2", "alexnet"), ("3", "vgg")):
        _fake_run(tmp_path / job, [f"model={model}"], {"test/acc": 0.9})
    (tmp_path / "1" / "summary.json").write_text("")  # a full disk's empty file
    (tmp_path / "2" / "summary.json").write_text('{"status": "compl')  # a cut one
    with open(tmp_path / "3" / "csv" / "version_0" / "metrics.csv", "a") as f:
        f.write("3,3,not-a-number,,,\n")  # a damaged row: the rows before it still count

    result = run("-m cnnzoo.report", str(tmp_path))

    assert set(_rows(tmp_path / "report")) == {"0", "3"}
    warnings = [line for line in result.stderr.splitlines() if "cannot be read" in line]
    assert [line.split(" ")[0] for line in warnings] == [
        str(tmp_path / "1" / "summary.json"),
        str(tmp_path / "2" / "summary.json"),
        str(tmp_path / "3" / "csv" / "version_0" / "metrics.csv"),
    ]
    assert "Traceback" not in result.stderr
