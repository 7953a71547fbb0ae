"""`python train.py -m hparams_search=<name>` runs an Optuna study through the cnnzoo_optuna
sweeper: stored in the sweep dir and resumable, pruning hopeless trials, recording failures and
going on, rejecting oversize networks before training, and ending with a runnable best config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from cli import QUIET, SHORT, run, start, stop, wait_for

from cnnzoo.study import study_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def trials(sweep: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=study_storage(sweep)).trials


def search(
    sweep: Path,
    name: str,
    *args: str,
    config_dir: Path | None = None,
    check: bool = True,
    short: tuple[str, ...] = SHORT,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    extra = ["--config-dir", str(config_dir)] if config_dir else []
    return run(
        "train.py",
        *extra,
        "-m",
        f"hparams_search={name}",
        f"hydra.sweep.dir={sweep}",
        *short,
        *args,
        check=check,
        extra_env=extra_env,
    )


# a trial: one short LeNet epoch (test=false: the search optimises val/acc_best)
TRIAL = ("debug=limit", "trainer.max_epochs=1", "test=false", *QUIET)


def plain_search(config_dir: Path) -> Path:
    """A search config without a space of its own: the command line gives it."""
    (config_dir / "hparams_search").mkdir(exist_ok=True)
    (config_dir / "hparams_search" / "plain.yaml").write_text(
        "# @package _global_\n"
        "defaults: [/_optuna]\n"
        "optimized_metric: val/acc_best\n"
        "hydra:\n"
        "  sweeper:\n"
        "    study_name: plain\n"
    )
    return config_dir


def log_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


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
    # each outcome said once, by the sweeper: a pruned trial is no "Error executing job"
    assert "Error executing job" not in result.stdout + result.stderr
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


def test_a_search_space_from_the_command_line_and_a_deleted_logger(tmp_path: Path) -> None:
    """hydra-optuna-sweeper's syntax: `interval`, `tag(log, …)`, comma lists; `~logger` reaches
    every job and the best experiment (it crashed the best-trial writer before)."""
    sweep = tmp_path / "sweep"
    space = ("model.optimizer.lr=tag(log, interval(1e-4, 1e-2))", "data.batch_size=32,64")
    search(sweep, "plain", "hydra.sweeper.n_trials=2", *space, "~logger",
           config_dir=plain_search(tmp_path), short=TRIAL)  # fmt: skip
    done = trials(sweep, "plain")
    assert [t.state.name for t in done] == ["COMPLETE", "COMPLETE"]
    for trial in done:
        assert set(trial.params) == {"model.optimizer.lr", "data.batch_size"}
        assert 1e-4 <= trial.params["model.optimizer.lr"] <= 1e-2
        assert trial.params["data.batch_size"] in (32, 64)
        config = yaml.safe_load((sweep / str(trial.number) / ".hydra" / "config.yaml").read_text())
        assert config.get("logger") is None
        assert config["model"]["optimizer"]["lr"] == trial.params["model.optimizer.lr"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(done, key=lambda t: t.value)
    assert results["best_params"] == best.params and results["best_value"] == best.value
    assert "- override /logger: null" in (sweep / "experiment" / "best_plain.yaml").read_text()


@pytest.mark.slow  # two searches, four trainings
def test_a_continued_search_proposes_new_candidates(tmp_path: Path) -> None:
    """The sampler was seeded alike in every process: a continued study replayed its first
    trials' parameters. A worker's seed is now moved by its first trial's number."""
    sweep = tmp_path / "sweep"
    search(sweep, "mnist_optuna", "hydra.sweeper.n_trials=2", short=TRIAL)
    result = search(sweep, "mnist_optuna", "hydra.sweeper.n_trials=4", short=TRIAL)
    assert "Sampler seed 42 + 2" in log_of(result)
    done = trials(sweep, "mnist_optuna")
    assert [t.number for t in done] == [0, 1, 2, 3]
    first = [t.params for t in done[:2]]
    assert all(t.params not in first for t in done[2:])


@pytest.mark.slow  # two trainings
def test_a_grid_search_ends_when_the_grid_is_exhausted(tmp_path: Path) -> None:
    """GridSampler stops the study once every point has run, which Optuna allows only inside
    study.optimize (`Study.stop` raised RuntimeError): the search now ends cleanly."""
    sweep = tmp_path / "sweep"
    result = search(sweep, "plain", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=5",
                    "model.optimizer.lr=0.001,0.003", config_dir=plain_search(tmp_path),
                    short=TRIAL)  # fmt: skip
    assert "Every point of the grid has been tried" in log_of(result)
    done = trials(sweep, "plain")
    assert sorted(t.params["model.optimizer.lr"] for t in done) == [0.001, 0.003]
    assert all(t.state.name == "COMPLETE" for t in done)


def test_too_many_failures_stop_the_search(tmp_path: Path) -> None:
    """hydra-optuna-sweeper's max_failure_rate: past it, no new trial starts and the search
    exits 1 naming the last failure."""
    sweep = tmp_path / "sweep"
    result = search(sweep, "plain", "hydra.sweeper.n_trials=4",
                    "hydra.sweeper.max_failure_rate=0.5", "model.optimizer.lr=-1.0",
                    config_dir=plain_search(tmp_path), short=TRIAL, check=False)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "1 of the 1 trials this search ran failed, more than max_failure_rate=0.5" in (
        result.stderr
    )
    assert [t.state.name for t in trials(sweep, "plain")] == ["FAIL"]


@pytest.mark.slow  # three trainings
def test_several_objectives_end_with_the_pareto_front(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = search(sweep, "plain", "hydra.sweeper.n_trials=3", "hydra/sweeper/sampler=random",
                    "hydra.sweeper.direction=[maximize,minimize]",
                    "hydra.sweeper.objectives=[val/acc_best,model/params]", "model=lenet,mlp",
                    config_dir=plain_search(tmp_path), short=TRIAL)  # fmt: skip
    study = optuna.load_study(study_name="plain", storage=study_storage(sweep))
    assert study.metric_names == ["val/acc_best", "model/params"]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    for trial in study.trials:  # model/params is the candidate's size, measured by the sweeper
        assert trial.values[1] == trial.user_attrs["model/params"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    front = results["solutions"]
    assert {s["trial"] for s in front} == {t.number for t in study.best_trials}
    for a in front:  # no solution dominates another
        for b in front:
            (acc_a, size_a), (acc_b, size_b) = a["values"], b["values"]
            assert not (acc_a >= acc_b and size_a <= size_b and (acc_a, size_a) != (acc_b, size_b))
    for solution in front:
        assert (sweep / "experiment" / f"pareto_plain_{solution['trial']}.yaml").is_file()
    assert f"Pareto front: {len(front)} of 3 completed trials" in log_of(result)
    assert "Pareto front of plain (val/acc_best, model/params)" in (
        (sweep / "report" / "report.md").read_text()
    )


@pytest.mark.slow  # three trainings
def test_a_custom_search_space_draws_dependent_parameters(tmp_path: Path) -> None:
    (tmp_path / "my_space.py").write_text(
        "def weight_decay_below_lr(cfg, trial):\n"
        "    lr = trial.params['model.optimizer.lr']\n"
        "    trial.suggest_float('model.optimizer.weight_decay', lr / 100, lr)\n"
    )
    sweep = tmp_path / "sweep"
    search(sweep, "plain", "hydra.sweeper.n_trials=3", "model.optimizer.lr=interval(1e-3, 1e-2)",
           "hydra.sweeper.custom_search_space=my_space.weight_decay_below_lr",
           config_dir=plain_search(tmp_path), short=TRIAL,
           extra_env={"PYTHONPATH": str(tmp_path)})  # fmt: skip
    for trial in trials(sweep, "plain"):
        lr, decay = trial.params["model.optimizer.lr"], trial.params["model.optimizer.weight_decay"]
        assert lr / 100 <= decay <= lr
        config = yaml.safe_load((sweep / str(trial.number) / ".hydra" / "config.yaml").read_text())
        assert config["model"]["optimizer"]["weight_decay"] == decay


def test_parallel_trials_take_slots_whichever_order_hydra_found_the_launchers_in() -> None:
    """With cnnzoo's launchers found before Hydra's submitit plugin (a plain install, or ``src``
    on ``PYTHONPATH``), Hydra's scan makes a new submitit base class after cnnzoo's subclassed the
    old one: the sweeper still knows its launcher runs each trial in a slot of its own."""
    scan = (
        "import hydra_plugins\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra_plugins.cnnzoo_submitit_launcher.launcher import LocalLauncher, SlurmLauncher\n"
        "from hydra_plugins.cnnzoo_optuna_sweeper.sweeper import _is_submitit\n"
        "Plugins._scan_all_plugins([hydra_plugins])\n"
        "print(*(_is_submitit(object.__new__(c)) for c in (LocalLauncher, SlurmLauncher)))\n"
        "from hydra._internal.core_plugins.basic_launcher import BasicLauncher\n"
        "print(_is_submitit(object.__new__(BasicLauncher)))\n"
    )
    shown = subprocess.run([sys.executable, "-c", scan], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["True", "True", "False"]


@pytest.mark.slow  # three trainings in parallel processes (~1.5 min on 2 CPU cores)
def test_parallel_trials_run_at_once_and_report_from_their_processes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    search(sweep, "mnist_optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2",
           "hydra/launcher=local", short=TRIAL)  # fmt: skip
    first, second, third = trials(sweep, "mnist_optuna")
    assert all(t.state.name == "COMPLETE" for t in (first, second, third))
    # two in flight at once; the third took the first free slot
    assert second.datetime_start < first.datetime_complete
    assert third.datetime_start >= min(first.datetime_complete, second.datetime_complete)
    # each job (its own process) reported its epoch to its trial, for the pruner
    assert all(list(t.intermediate_values) == [0] for t in (first, second, third))


@pytest.mark.slow  # two searches, three trainings
def test_a_stopped_search_retries_the_cut_off_trial_first_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    """SIGTERM mid-trial: the trial is failed and queued again; rerunning the command runs it
    first, resuming from the cut-off job's last.ckpt (into its own job dir), then goes on."""
    sweep = tmp_path / "sweep"
    args = ("hydra.sweeper.n_trials=2", "debug=limit", "trainer.max_epochs=4", "test=false", *QUIET)
    command = ("-m", "hparams_search=mnist_optuna", f"hydra.sweep.dir={sweep}", *args)
    stopped = start("train.py", *command)
    checkpoint = sweep / "0" / "checkpoints" / "last.ckpt"
    wait_for(checkpoint.is_file, timeout=300)
    code, _ = stop(stopped)
    assert code == 143
    cut = trials(sweep, "mnist_optuna")
    assert [t.state.name for t in cut] == ["FAIL", "WAITING"]
    assert cut[0].user_attrs["note"] == "interrupted: the search worker stopped"

    run("train.py", *command)
    cut_off, retry, fresh = trials(sweep, "mnist_optuna")
    assert (cut_off.state.name, retry.state.name, fresh.state.name) == ("FAIL", "COMPLETE",
                                                                        "COMPLETE")  # fmt: skip
    assert retry.params == cut_off.params and fresh.params != cut_off.params
    assert retry.user_attrs["note"] == f"retry of trial 0, resumed from {checkpoint}"
    record = json.loads((sweep / "1" / "summary.json").read_text())
    assert Path(record["resumed_from"]) == checkpoint
