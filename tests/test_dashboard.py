"""What the trackers' dashboards get, read back from what was written: the offline W&B run files,
TensorBoard's event files and the run dir (callbacks.dashboard and callbacks.test_report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import wandb
import yaml
from cli import QUIET, run
from hydra import compose, initialize_config_module
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf
from wandb_records import artifacts, history, metric_definitions, run_info, summary

from cnnzoo import plots
from cnnzoo.callbacks import Dashboard
from cnnzoo.callbacks.dashboard import HPARAMS_TAB, _overridden_keys
from cnnzoo.config import CONFIG_MODULE
from cnnzoo.trackers import tracker_links
from cnnzoo.train import train


def _config(run_dir: Path, *overrides: str) -> DictConfig:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"paths.output_dir={run_dir}",
                "debug=limit",
                "trainer.max_epochs=2",
                "data.num_workers=0",
                *QUIET,
                *overrides,
            ],
        )


def _train(run_dir: Path, *overrides: str) -> dict[str, Any]:
    record = train(_config(run_dir, *overrides))
    wandb.finish()  # what the entry point does at the end of every job
    return record


def _run_file(run_dir: Path) -> Path:
    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    return path


def _tensorboard(log_dir: Path) -> dict[str, Any]:
    """What TensorBoard shows of a log dir: the HPARAMS tab's hyperparameters and metric tags,
    each scalar's last value, and the image tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    shown: dict[str, Any] = {"hparams": {}, "metrics": []}
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.WhichOneof("data") == "session_start_info":
            for name, value in data.session_start_info.hparams.items():
                shown["hparams"][name] = getattr(value, value.WhichOneof("kind"))
        elif data.WhichOneof("data") == "experiment":
            shown["metrics"] = [info.name.tag for info in data.experiment.metric_infos]
    shown["scalars"] = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
    shown["images"] = events.Tags()["images"]
    return shown


def test_a_multirun_gives_each_job_its_own_wandb_run_and_ends_with_its_report(
    tmp_path: Path,
) -> None:
    from test_report import check_sweep_report

    sweep = tmp_path / "sweep"
    run("train.py", "-m", "logger=[csv,wandb]", "model=lenet,mlp", "seed=3", "debug=limit",
        "trainer.max_epochs=2", f"hydra.sweep.dir={sweep}", *QUIET)  # fmt: skip

    check_sweep_report(sweep)
    ids = set()
    for job, model in (("0", "lenet"), ("1", "mlp")):
        run_file = _run_file(sweep / job)
        info = run_info(run_file)
        ids.add(info["id"])
        overrides = OmegaConf.load(sweep / job / ".hydra" / "overrides.yaml")
        assert info["group"] == f"train/{sweep.name}"  # the sweep
        assert info["name"] == ",".join(overrides)  # the job's overrides
        assert info["config"]["seed"] == 3  # its own resolved config
        assert info["config"]["model"]["net"]["name"] == model
        rows = history(run_file)
        assert [row["epoch"] for row in rows if "val/acc" in row] == [0, 1]
        (test,) = [row for row in rows if "test/acc" in row]
        record = json.loads((sweep / job / "summary.json").read_text())
        assert test["test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    assert len(ids) == 2


def test_wandb_gets_axes_summaries_artifacts_and_test_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # artifact staging
    run_dir = tmp_path / "run"
    record = _train(
        run_dir, "logger=many_loggers", "logger.wandb.log_model=true", "data.cutmix_alpha=1.0"
    )
    run_file = _run_file(run_dir)

    definitions = metric_definitions(run_file)
    for name in ("train/loss_epoch", "train/acc", "train/images_per_s", "val/*", "test/*"):
        assert definitions[name]["step_metric"] == "epoch", name
    assert definitions["train/loss_step"]["step_metric"] == "trainer/global_step"
    assert definitions["val/acc"]["summary"] == ["max"]
    assert definitions["val/loss"]["summary"] == ["min"]

    final = summary(run_file)
    val_acc = [row["val/acc"] for row in history(run_file) if "val/acc" in row]
    assert final["val/acc"] == {"max": pytest.approx(max(val_acc))}
    assert final["model/params"] == 61_706 and final["model/flops"] > 0
    assert final["test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    for key in ("train/batch", "test/confusion_matrix", "test/misclassified"):
        assert final[f"{key}/_type"] == "images/separated", key
    assert final["test/confusion_matrix_chart_table/_type"] == "table-file"

    # checkpoints: best.ckpt as "best", then last.ckpt as "latest", once, at the end of fitting
    # (W&B gives every new version "latest" too; the server keeps it on the newest)
    models = [a for a in artifacts(run_file) if a["type"] == "model"]
    assert [a["files"] for a in models] == [["best.ckpt"], ["last.ckpt"]]
    assert "best" in models[0]["aliases"] and models[1]["aliases"] == ["latest"]
    assert {a["name"] for a in models} == {f"model-{run_info(run_file)['id']}"}
    assert models[0]["metadata"]["monitor"] == "val/acc"

    (table_file,) = run_file.parent.glob("files/media/table/test/predictions_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["subset", "image", "true", "predicted", "confidence", "correct"]
    subsets = [row[0] for row in table["data"]]
    assert subsets.count("sample") == 32 and 0 < subsets.count("mistake") <= 32
    (table_artifact,) = [a for a in artifacts(run_file) if "testpredictions" in a["name"]]
    images = [f for f in table_artifact["files"] if f.startswith("media/images/")]
    assert len(images) > 32  # every image its own file: none blank, none shared


def test_tensorboard_gets_the_batch_the_report_images_and_the_hparams_tab(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    record = _train(run_dir, "logger=tensorboard", "seed=7")

    shown = _tensorboard(run_dir / "tensorboard" / "version_0")
    assert shown["hparams"]["seed"] == 7
    assert shown["hparams"]["model/optimizer/lr"] == pytest.approx(3e-3)  # the config, flattened
    assert shown["hparams"]["model/params"] == 61_706
    # what a sweep compares, not the whole config (hparams.yaml keeps that)
    assert set(shown["hparams"]) <= set(HPARAMS_TAB)
    assert {"seed", "model/net/name", "data/batch_size", "trainer/max_epochs"} <= set(
        shown["hparams"]
    )
    saved = yaml.safe_load((run_dir / "tensorboard/version_0/hparams.yaml").read_text())
    assert saved["callbacks"]["model_checkpoint"]["monitor"] == "val/acc"
    assert {"final/val/acc_best", "final/test/acc"} <= set(shown["metrics"])
    assert shown["scalars"]["final/test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    assert {"train/batch", "test/confusion_matrix", "test/misclassified"} <= set(shown["images"])
    batch = run_dir / "train_batch.png"  # also for CSV-only users
    assert batch.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and batch.stat().st_size > 10_000


def test_the_hparams_tab_adds_the_keys_a_job_overrides() -> None:
    from hydra.core.hydra_config import HydraConfig

    overrides = ["model=resnet20", "data.split_seed=3", "+trainer.gradient_clip_val=1.0"]
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        assert _overridden_keys() == ["data/split_seed", "trainer/gradient_clip_val"]
    finally:
        HydraConfig.instance().cfg = None


def test_a_run_without_test_fills_the_hparams_tab_when_fitting_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    run_dir = tmp_path / "run"
    _train(run_dir, "logger=many_loggers", "test=false", "logger.wandb.log_model=all")

    metrics = _tensorboard(run_dir / "tensorboard" / "version_0")["metrics"]
    assert "final/val/acc" in metrics
    assert not [tag for tag in metrics if tag.startswith("final/test/")]
    # log_model=all: every save, here after each of the 2 epochs (best may not change)
    logged = [a["files"][0] for a in artifacts(_run_file(run_dir)) if a["type"] == "model"]
    assert logged.count("last.ckpt") == 2 and "best.ckpt" in logged


def test_tracker_links_point_to_the_runs(tmp_path: Path) -> None:
    wandb_logger = WandbLogger(project="links", save_dir=str(tmp_path), offline=True)
    tensorboard = TensorBoardLogger(save_dir=str(tmp_path / "tensorboard"), name=None)
    trainer = L.Trainer(logger=[wandb_logger, tensorboard], callbacks=[Dashboard()])
    for logger in trainer.loggers:
        logger.log_metrics({"x": 1.0}, step=0)
    wandb.finish()  # as at the end of a job: the links are still known

    links = tracker_links(trainer)

    run_dir = Path(links["wandb"]["offline_dir"])
    assert links["wandb"]["id"] == wandb_logger.version and links["wandb"]["project"] == "links"
    assert list(run_dir.glob(f"run-{wandb_logger.version}.wandb"))
    assert links["wandb"]["sync"] == f"wandb sync {run_dir}" and "url" not in links["wandb"]
    assert links["tensorboard"] == tensorboard.log_dir
    assert list(Path(links["tensorboard"]).glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("target", "caption"),
    [
        (np.int64(3), "c3"),
        (np.eye(5)[2], "c2"),  # a sample the mix left whole
        (np.array([0.0, 0.7, 0.0, 0.3, 0.0]), "c1 0.70\nc3 0.30"),
    ],
)
def test_a_training_image_is_captioned_by_its_strongest_classes(target: Any, caption: str) -> None:
    assert plots.target_caption(target, [f"c{i}" for i in range(5)]) == caption


def test_log_model_takes_only_the_wandb_choices() -> None:
    with pytest.raises(ValueError, match="log_model"):
        Dashboard(log_model="best")
