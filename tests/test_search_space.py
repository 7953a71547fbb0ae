"""The cnnzoo_optuna sweeper's search space and results, in-process (no training): Hydra's sweep
syntax read as hydra-optuna-sweeper reads it (its test cases, ported), cnnzoo's own form, the
command line fixing a key, custom search spaces, grids, and the best trial as an experiment
config that composes — also after a `~group` override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import compose_config

from cnnzoo.errors import UserError
from hydra_plugins.cnnzoo_optuna_sweeper.results import experiment_yaml, write_results
from hydra_plugins.cnnzoo_optuna_sweeper.space import search_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def spec(override: str) -> dict[str, Any]:
    [dimension] = search_space({}, [override]).dimensions
    return dict(dimension.spec)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("key=choice(1,2)", {"type": "categorical", "choices": [1, 2]}),
        ("key=choice(true, false)", {"type": "categorical", "choices": [True, False]}),
        ("key=choice('hello', 'world')", {"type": "categorical", "choices": ["hello", "world"]}),
        ("key=a,b", {"type": "categorical", "choices": ["a", "b"]}),
        ("key=choice([1,2],[3,4])", {"type": "categorical", "choices": ["[1,2]", "[3,4]"]}),
        # Hydra's range, as its basic sweeper expands it: the stop is excluded (hydra-optuna-sweeper
        # 1.2 included it: range(1,3) drew 3 too)
        ("key=range(1,3)", {"type": "int", "low": 1, "high": 2, "step": 1}),
        ("key=range(0,10,step=3)", {"type": "int", "low": 0, "high": 9, "step": 3}),
        ("key=range(0.5, 5.5, step=1)", {"type": "float", "low": 0.5, "high": 4.5, "step": 1}),
        ("key=interval(1, 5)", {"type": "float", "low": 1.0, "high": 5.0, "log": False}),
        ("key=int(interval(1, 5))", {"type": "int", "low": 1, "high": 5, "log": False}),
        ("key=tag(log, interval(1, 5))", {"type": "float", "low": 1.0, "high": 5.0, "log": True}),
        ("key=tag(log, int(interval(1, 5)))", {"type": "int", "low": 1, "high": 5, "log": True}),
    ],
)
def test_hydra_sweep_syntax_is_a_dimension(override: str, expected: dict[str, Any]) -> None:
    assert spec(override) == expected


def test_shuffled_values_are_categorical() -> None:
    shuffled = spec("key=shuffle(range(1,4))")
    assert shuffled["type"] == "categorical"
    assert sorted(shuffled["choices"]) == [1, 2, 3]


def test_plain_overrides_are_fixed_and_the_command_line_wins_over_params() -> None:
    params = {
        "model.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "data.batch_size": {"type": "categorical", "choices": [32, 64]},
        "seed": "range(1,4)",  # Hydra's form inside params
        "trainer.max_epochs": 3,  # a value every trial gets
    }
    space = search_space(params, ["data.batch_size=64", "~logger", "model=lenet,mlp", "+w=5"])
    assert [d.name for d in space.dimensions] == ["model.optimizer.lr", "seed", "model"]
    assert [d.key for d in space.dimensions] == ["++model.optimizer.lr", "seed", "model"]
    assert space.fixed == ("trainer.max_epochs=3", "data.batch_size=64", "~logger", "+w=5")


def test_a_trial_draws_every_dimension_within_its_bounds() -> None:
    space = search_space(
        {"model.net.layers": {"type": "int", "low": 1, "high": 3, "size": 2}},
        ["model.optimizer.lr=tag(log, interval(1e-4, 1e-2))", "model=lenet,mlp", "+w=range(1,4)"],
    )
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = dict(o.split("=", 1) for o in (d.override(trial) for d in space.dimensions))
    assert set(overrides) == {"++model.net.layers", "model.optimizer.lr", "model", "+w"}
    layers = [trial.params["model.net.layers.0"], trial.params["model.net.layers.1"]]
    assert all(1 <= n <= 3 for n in layers)
    assert overrides["++model.net.layers"] == f"[{layers[0]},{layers[1]}]"
    assert 1e-4 <= float(overrides["model.optimizer.lr"]) <= 1e-2
    assert overrides["model"] in ("lenet", "mlp")
    assert overrides["+w"] in ("1", "2", "3")
    assert space.param_names == set(trial.params)


def test_the_grid_of_a_discrete_space() -> None:
    space = search_space(
        {"model.net.widths": {"type": "categorical", "choices": [[8, 16], [16, 32]]}},
        ["seed=range(1,3)", "model.optimizer.lr=range(0.1,0.35,0.1)"],
    )
    assert space.grid() == {
        "model.net.widths": ["[8, 16]", "[16, 32]"],
        "seed": [1, 2],
        "model.optimizer.lr": [0.1, 0.2, 0.3],
    }
    with pytest.raises(UserError, match="GridSampler needs discrete values"):
        search_space({}, ["lr=interval(0.1, 1)"]).grid()


def _study_with_a_trial(tmp_path: Path, overrides: list[str], values: list[float]) -> Any:
    study = optuna.create_study(
        study_name="s", directions=["maximize"] * len(values), storage=f"sqlite:///{tmp_path}/s.db"
    )
    study.set_user_attr("metric", "val/acc_best")
    trial = study.ask()
    trial.suggest_float("model.optimizer.lr", 1e-4, 1e-2)
    trial.set_user_attr("overrides", overrides)
    study.tell(trial, values)
    return study


def test_the_best_trial_composes_after_a_deleted_group(tmp_path: Path) -> None:
    """`~logger` crashed the best-trial writer ("not enough values to unpack"): it is now a null
    default, and the experiment composes as the trial ran."""
    overrides = [
        "hparams_search=mnist_optuna",
        "~logger",
        "model=mlp",
        "++model.optimizer.lr=0.0123",
        "debug=limit",
        "ckpt_path=/elsewhere/checkpoints/last.ckpt",
        "~callbacks.rich_progress_bar",
    ]
    study = _study_with_a_trial(tmp_path, overrides, [0.9])
    [path] = write_results(study, tmp_path)
    assert path == tmp_path / "experiment" / "best_s.yaml"
    text = path.read_text()
    assert "# The search also ran with: hparams_search=mnist_optuna debug=limit" in text
    assert "ckpt_path" not in text  # the job's own, not the configuration
    cfg = compose_config("experiment=best_s", f"hydra.searchpath=[file://{tmp_path}]")
    assert cfg.get("logger") is None
    assert cfg.model.net.name == "mlp"
    assert cfg.model.optimizer.lr == 0.0123
    assert cfg.callbacks.rich_progress_bar is not None  # a deleted value is listed, not applied
    results = (tmp_path / "optimization_results.yaml").read_text()
    assert "best_value: 0.9" in results and "best_trial: 0" in results


def test_experiment_yaml_reads_overrides_with_hydras_parser(tmp_path: Path) -> None:
    study = _study_with_a_trial(tmp_path, ["+w=[1,2]"], [0.5])
    text = experiment_yaml(["++model.net.widths=[8,16]", "+w=[1,2]"], study, study.best_trial,
                           tmp_path, "best_s")  # fmt: skip
    assert "widths:\n    - 8\n    - 16" in text
    assert "w:\n- 1\n- 2" in text
