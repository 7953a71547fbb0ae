"""A Hydra sweeper that runs an Optuna study, one trial per job.

Why our own: hydra-optuna-sweeper 1.2 pins optuna < 3 and cannot prune. This one runs on current
Optuna and adds what a search over architectures needs:

- storage: the study lives in ``sqlite:///<sweep dir>/optuna.db`` (or any Optuna storage URL), so
  rerunning the same command with ``hydra.sweep.dir=<that dir>`` continues the study; trials left
  running by an interruption are marked failed and tried again first;
- pruning: each job's ``OptunaTrial`` callback reports the validation metric per epoch to the
  trial and stops the job when the pruner says so (the trial is recorded as pruned);
- failures: a job that raises, or returns a NaN or no metric, is recorded as failed and the study
  goes on;
- budget: ``max_params`` / ``max_flops`` build each candidate network from its config and reject an
  oversize one before any training (recorded as pruned, with the reason);
- the best trial is written as an experiment config, ``<sweep dir>/experiment/best_<study>.yaml``.
"""

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

# no `from __future__ import annotations`: Hydra loads plugins outside sys.modules, where
# dataclasses cannot resolve string annotations; OmegaConf also needs Optional/Dict here
from typing import Any, Dict, Optional  # noqa: UP035

import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from cnnzoo.records import one_line

__all__ = ["OptunaSweeper", "OptunaSweeperConf", "suggest"]

log = logging.getLogger(__name__)

TRIAL_KEY = "optuna_trial"
STUDY_DB = "optuna.db"
# config groups that train.yaml selects as null or optional: not in a best-trial experiment
UNSET_GROUPS = ("debug", "experiment", "hparams_search", "local")


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.cnnzoo_optuna_sweeper.sweeper.OptunaSweeper"
    study_name: str = "search"
    # maximize | minimize
    direction: str = "maximize"
    # an Optuna storage URL; null: sqlite:///<sweep dir>/optuna.db
    storage: Optional[str] = None  # noqa: UP045
    # the study's size: trials of every state, including those of an earlier, interrupted run
    n_trials: int = 20
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 42}
    )
    pruner: Any = None
    # reject candidates above these sizes before training (null: no limit)
    max_params: Optional[int] = None  # noqa: UP045
    max_flops: Optional[int] = None  # noqa: UP045
    # the search space: `key: {type: float|int|categorical, ...}` (see suggest)
    params: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006


ConfigStore.instance().store(group="hydra/sweeper", name="cnnzoo_optuna", node=OptunaSweeperConf)


def suggest(trial: Any, name: str, spec: dict[str, Any]) -> Any:
    """One value of the search space.

    - ``{type: float, low, high, log: false, step: null}`` and the same with ``type: int``;
      ``size: n`` makes a list of n values, one per stage (``name.0`` ... in Optuna);
    - ``{type: categorical, choices: [...]}``: choices may be lists (e.g. stage widths).
    """
    kind = spec.get("type")
    size = spec.get("size")
    if kind in ("float", "int"):
        suggest_one = trial.suggest_float if kind == "float" else trial.suggest_int
        options = {k: spec[k] for k in ("log", "step") if spec.get(k) is not None}
        if size is not None:
            return [
                suggest_one(f"{name}.{i}", spec["low"], spec["high"], **options)
                for i in range(int(size))
            ]
        return suggest_one(name, spec["low"], spec["high"], **options)
    if kind == "categorical":
        choices = list(spec["choices"])
        # Optuna stores scalar choices; lists are kept as their JSON text
        encoded = [json.dumps(c) if isinstance(c, (list, dict)) else c for c in choices]
        value = trial.suggest_categorical(name, encoded)
        return choices[encoded.index(value)]
    raise ValueError(
        f"hydra.sweeper.params.{name}: type must be float, int or categorical, got {kind!r}"
    )


def _override_value(value: Any) -> str:
    if isinstance(value, (list, dict, bool)) or value is None:
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class OptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        # Hydra has already instantiated the sampler and pruner nodes
        self.conf = SimpleNamespace(**conf)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- the study -------------------------------------------------------------------------------

    def _study(self, sweep_dir: Path) -> Any:
        import optuna

        storage = self.conf.storage or f"sqlite:///{sweep_dir.resolve()}/{STUDY_DB}"
        study = optuna.create_study(
            study_name=self.conf.study_name,
            storage=storage,
            sampler=self.conf.sampler,
            direction=self.conf.direction,
            load_if_exists=True,
        )
        study.set_user_attr("metric", self.config.get("optimized_metric"))
        stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for trial in stale:  # interrupted: fail it, and try its parameters again first
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, skip_if_exists=False)
            log.info("Trial %d was interrupted; it is retried", trial.number)
        return study

    def _fixed_overrides(self, arguments: list[str]) -> list[str]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        fixed = []
        for override in parser.parse_overrides(arguments):
            if override.is_sweep_override():
                raise ValueError(
                    f"{override.input_line}: the Optuna sweeper takes its search space from "
                    "hydra.sweeper.params, not from comma-separated values"
                )
            fixed.append(override.input_line)
        return fixed

    def _over_budget(self, overrides: list[str]) -> str | None:
        if self.conf.max_params is None and self.conf.max_flops is None:
            return None
        from cnnzoo.models.stats import config_cost

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        params, flops = config_cost(cfg)
        if self.conf.max_params is not None and params > self.conf.max_params:
            return f"{params:,} parameters > max_params={self.conf.max_params:,}"
        if self.conf.max_flops is not None and flops > self.conf.max_flops:
            return f"{flops:,} FLOPs > max_flops={self.conf.max_flops:,}"
        return None

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        fixed = self._fixed_overrides(arguments)
        study = self._study(sweep_dir)
        trial_key = TRIAL_KEY if TRIAL_KEY in self.config else f"+{TRIAL_KEY}"
        space = OmegaConf.to_container(OmegaConf.create(self.conf.params), resolve=True)
        log.info("Study %s in %s: %d trials so far", study.study_name, sweep_dir, len(study.trials))

        while len(study.trials) < self.conf.n_trials:
            trial = study.ask()
            values = {name: suggest(trial, name, spec) for name, spec in space.items()}
            # `++`: set the key whether or not the config declares it (the registry holds most of
            # a net's arguments, so a model config does not list them)
            overrides = [*fixed, *(f"++{k}={_override_value(v)}" for k, v in values.items())]
            trial.set_user_attr("overrides", overrides)
            try:
                rejected = self._over_budget(overrides)
            except Exception as error:  # a candidate the builder refuses is a failed trial
                log.warning("Trial %d: cannot build the network: %s", trial.number, error)
                trial.set_user_attr("note", f"build failed: {error}")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            if rejected:
                log.info("Trial %d rejected before training: %s", trial.number, rejected)
                trial.set_user_attr("note", f"over budget: {rejected}")
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            [result] = self.launcher.launch(
                [[*overrides, f"{trial_key}={trial.number}"]], initial_job_idx=trial.number
            )
            self._tell(study, trial, result)
        self._write_best(study, fixed, sweep_dir)
        states = [trial.state.name.lower() for trial in study.trials]
        if "complete" not in states:
            from cnnzoo.errors import UserError

            # a search that found nothing is a failure, not a success with an empty result
            counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
            raise UserError(
                f"no trial of the study {study.study_name!r} completed ({len(states)} trials: "
                f"{counts}; the reasons are in {sweep_dir}/summary.md and the study's notes)"
            )
        return study

    def _tell(self, study: Any, trial: Any, result: Any) -> None:
        import optuna

        try:
            # JobReturn.return_value re-raises the job's exception when the job failed
            value = result.return_value
        except optuna.TrialPruned as error:
            log.info("Trial %d pruned: %s", trial.number, error)
            trial.set_user_attr("note", f"pruned: {error}")
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        except Exception as error:
            log.warning("Trial %d failed: %s: %s", trial.number, type(error).__name__, error)
            trial.set_user_attr("note", one_line(f"{type(error).__name__}: {error}"))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        if value is None or not math.isfinite(float(value)):
            log.warning("Trial %d returned %s: recorded as failed", trial.number, value)
            trial.set_user_attr("note", f"metric is {value}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        study.tell(trial, float(value))
        log.info("Trial %d: %s = %.4f", trial.number, self.config.get("optimized_metric"), value)

    def _write_best(self, study: Any, fixed: list[str], sweep_dir: Path) -> Path | None:
        try:
            best = study.best_trial
        except ValueError:
            log.warning("No trial completed, so there is no best configuration")
            return None
        path = sweep_dir / "experiment" / f"best_{study.study_name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(experiment_yaml(best.user_attrs["overrides"], study, best, sweep_dir))
        log.info(
            "Best trial %d (%s = %.4f): python train.py --config-dir %s experiment=%s",
            best.number,
            self.config.get("optimized_metric"),
            best.value,
            sweep_dir,
            path.stem,
        )
        return path


def experiment_yaml(overrides: list[str], study: Any, best: Any, sweep_dir: Path) -> str:
    """An experiment config equal to a trial's command line: group choices become defaults."""
    from importlib.resources import files

    from cnnzoo.config import CONFIG_MODULE

    defaults, values, skipped = [], OmegaConf.create({}), []
    for line in overrides:
        key, value = line.split("=", 1)
        key = key.lstrip("+~")
        if key in UNSET_GROUPS or key.startswith("hydra.") or key == TRIAL_KEY:
            # an experiment cannot override groups that train.yaml leaves empty (Hydra refuses)
            skipped.append(line)
            continue
        if "." not in key and files(CONFIG_MODULE).joinpath(key).is_dir():
            defaults.append({f"override /{key}": value})
        else:
            OmegaConf.update(values, key, yaml.safe_load(value), force_add=True)
    body = OmegaConf.to_container(values)
    header = (
        "# @package _global_\n"
        f"# Best trial {best.number} of the Optuna study '{study.study_name}' "
        f"({study.user_attrs.get('metric')} = {best.value:.4f}).\n"
        f"# Run it: python train.py --config-dir {sweep_dir} experiment=best_{study.study_name}\n"
        f"# (or copy this file to configs/experiment/ and drop --config-dir)\n"
    )
    if skipped:
        header += f"# The search also ran with: {' '.join(skipped)}\n"
    text = yaml.safe_dump({"defaults": defaults} if defaults else {}, sort_keys=False)
    text = "" if not defaults else text
    return header + text + (yaml.safe_dump(body, sort_keys=False) if body else "")
