"""`python train.py -m hparams_search=<name>` runs an Optuna study through the cnnzoo_optuna
sweeper: stored in the sweep dir and resumable, pruning hopeless trials, recording failures and
going on, rejecting oversize networks before training, and ending with a runnable best config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
from cli import SHORT, run

optuna.logging.set_verbosity(optuna.logging.WARNING)


def trials(sweep: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{sweep}/optuna.db").trials


def search(
    sweep: Path, name: str, *args: str, config_dir: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    extra = ["--config-dir", str(config_dir)] if config_dir else []
    return run(
        "train.py",
        *extra,
        "-m",
        f"hparams_search={name}",
        f"hydra.sweep.dir={sweep}",
        *SHORT,
        *args,
        check=check,
    )


@pytest.mark.slow  # five trainings, about a minute on 2 CPU cores
def test_a_study_continues_where_it_stopped_and_its_best_trial_runs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    search(sweep, "mnist_optuna", "hydra.sweeper.n_trials=2")
    assert [t.state.name for t in trials(sweep, "mnist_optuna")] == ["COMPLETE", "COMPLETE"]

    search(sweep, "mnist_optuna", "hydra.sweeper.n_trials=3")  # the same sweep dir: resume
    done = trials(sweep, "mnist_optuna")
    assert [t.number for t in done] == [0, 1, 2]
    assert all((sweep / str(t.number) / "summary.json").is_file() for t in done)
    for trial in done:  # the trial's value is the job's optimized_metric
        record = json.loads((sweep / str(trial.number) / "summary.json").read_text())
        assert trial.value == pytest.approx(record["metrics"]["val/acc_best"])
    assert "## Search" in (sweep / "report" / "report.md").read_text()

    best = max(done, key=lambda t: t.value)
    experiment = sweep / "experiment" / "best_mnist_optuna.yaml"
    assert f"Best trial {best.number}" in experiment.read_text()
    rerun = tmp_path / "best"
    run(
        "train.py",
        "--config-dir",
        str(sweep),
        "experiment=best_mnist_optuna",
        f"hydra.run.dir={rerun}",
    )
    config = (rerun / ".hydra" / "config.yaml").read_text()
    assert f"lr: {best.params['model.optimizer.lr']}" in config
    assert json.loads((rerun / "summary.json").read_text())["status"] == "completed"


def test_failed_and_pruned_trials_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    (tmp_path / "hparams_search").mkdir()
    (tmp_path / "hparams_search" / "edge.yaml").write_text(
        "# @package _global_\n"
        "defaults: [/_optuna, override /hydra/sweeper/sampler: random]\n"
        "hydra:\n"
        "  sweeper:\n"
        "    study_name: edge\n"
        "    sampler: {seed: 0}\n"
        # nothing reaches 99% validation accuracy after an epoch: every trained trial is pruned
        "    pruner: {_target_: optuna.pruners.ThresholdPruner, lower: 0.99}\n"
        # a negative learning rate is refused: the trial fails
        "    params:\n"
        "      model.optimizer.lr: {type: categorical, choices: [-1.0, 0.001]}\n"
    )
    sweep = tmp_path / "sweep"
    result = search(sweep, "edge", "hydra.sweeper.n_trials=3", config_dir=tmp_path, check=False)
    assert result.returncode == 1  # no trial completed: the search found nothing
    assert "Traceback" not in result.stderr
    assert "no trial of the study 'edge' completed (3 trials:" in result.stderr
    assert (sweep / "report" / "report.md").is_file()  # written with whatever finished
    done = trials(sweep, "edge")
    assert len(done) == 3
    for trial in done:
        expected = "FAIL" if trial.params["model.optimizer.lr"] < 0 else "PRUNED"
        assert trial.state.name == expected, trial
    assert {t.state.name for t in done} == {"FAIL", "PRUNED"}
    pruned = next(t for t in done if t.state.name == "PRUNED")
    # the job reported its first epoch's val/acc (at that epoch: not one epoch late) and stopped
    assert list(pruned.intermediate_values) == [0]
    record = json.loads((sweep / str(pruned.number) / "summary.json").read_text())
    assert record["status"] == "pruned"
    assert not (sweep / "experiment").exists()  # no trial completed: no best config


@pytest.mark.slow
def test_oversize_networks_are_rejected_before_training(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = search(sweep, "nas_resnet", "hydra.sweeper.n_trials=3",
                    "hydra.sweeper.max_params=1000", check=False)  # fmt: skip
    assert "(3 trials: 3 pruned;" in result.stderr
    done = trials(sweep, "nas_resnet")
    assert [t.state.name for t in done] == ["PRUNED"] * 3
    assert all("max_params=1,000" in t.user_attrs["note"] for t in done)
    assert not any((sweep / str(t.number)).exists() for t in done)  # nothing was trained


@pytest.mark.parametrize("name", ["nas_resnet", "nas_densenet", "nas_convnext"])
def test_nas_spaces_build_valid_networks(name: str) -> None:
    """Every corner of each architecture space builds a network that classifies a batch."""
    import torch
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from cnnzoo.config import CONFIG_MODULE

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={name}"], return_hydra_config=True)
    space = OmegaConf.to_container(cfg.hydra.sweeper.params)
    for corner in ("low", "high"):
        net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
        for key, spec in space.items():
            field = key.removeprefix("model.net.")
            if spec["type"] == "categorical":
                net_cfg[field] = spec["choices"][0 if corner == "low" else -1]
            elif spec.get("size"):
                net_cfg[field] = [spec[corner]] * spec["size"]
            else:
                net_cfg[field] = spec[corner]
        net = instantiate(net_cfg).eval()
        with torch.no_grad():
            assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
