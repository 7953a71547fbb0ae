"""What a search leaves for the user at its end: the best trial (or, with several objectives, the
Pareto front) as runnable experiment configs, ``optimization_results.yaml`` (the file
hydra-optuna-sweeper writes, with the same keys) and the same in the log."""

import logging
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

__all__ = ["TRIAL_KEY", "experiment_yaml", "write_results"]

log = logging.getLogger(__name__)

# the job's override that names its trial (set per job by the sweeper)
TRIAL_KEY = "optuna_trial"
# config groups that train.yaml selects as null or optional: not in a best-trial experiment
UNSET_GROUPS = ("debug", "experiment", "hparams_search", "local")
# overrides that belong to the job, not to the configuration it trained
JOB_KEYS = (TRIAL_KEY, "ckpt_path")


def _objectives(study: Any) -> list[str]:
    return list(study.metric_names or [study.user_attrs.get("metric") or "value"])


def _scores(study: Any, trial: Any) -> str:
    return ", ".join(
        f"{name} = {value:.6g}"
        for name, value in zip(_objectives(study), trial.values, strict=True)
    )


def experiment_yaml(
    overrides: list[str], study: Any, trial: Any, sweep_dir: Path, name: str
) -> str:
    """An experiment config equal to a trial's command line: group choices become defaults,
    ``~group`` a null default; what an experiment cannot hold (the search's debug presets, a
    deleted value) is listed in the header."""
    from importlib.resources import files

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from cnnzoo.config import CONFIG_MODULE

    defaults: list[dict[str, Any]] = []
    values, skipped = OmegaConf.create({}), []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = str(override.key_or_group)
        if key in JOB_KEYS:
            continue
        if key in UNSET_GROUPS or key.startswith(("hydra.", "hydra/")):
            # an experiment cannot override groups that train.yaml leaves empty (Hydra refuses)
            skipped.append(override.input_line)
            continue
        group = "." not in key and files(CONFIG_MODULE).joinpath(key).is_dir()
        if override.is_delete():
            if group:
                defaults.append({f"override /{key}": None})
            else:
                skipped.append(override.input_line)
        elif group:
            defaults.append({f"override /{key}": override.value()})
        else:
            OmegaConf.update(values, key, override.value(), force_add=True)
    body = OmegaConf.to_container(values)
    what = "Best trial" if len(study.directions) == 1 else "Pareto-optimal trial"
    header = (
        "# @package _global_\n"
        f"# {what} {trial.number} of the Optuna study '{study.study_name}' "
        f"({_scores(study, trial)}).\n"
        f"# Run it: python train.py --config-dir {sweep_dir} experiment={name}\n"
        f"# (or copy this file to configs/experiment/ and drop --config-dir)\n"
    )
    if skipped:
        header += f"# The search also ran with: {' '.join(skipped)}\n"
    text = yaml.safe_dump({"defaults": defaults}, sort_keys=False) if defaults else ""
    return header + text + (yaml.safe_dump(body, sort_keys=False) if body else "")


def write_results(study: Any, sweep_dir: Path) -> list[Path]:
    """The best trial's experiment (one objective) or one per Pareto-optimal trial (several),
    ``<sweep dir>/optimization_results.yaml``, and the log lines that run them; [] when no trial
    completed."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        log.warning("No trial completed, so there is no best configuration")
        return []
    single = len(study.directions) == 1
    best = [study.best_trial] if single else sorted(study.best_trials, key=lambda t: t.number)
    paths = []
    for trial in best:
        name = f"best_{study.study_name}" if single else f"pareto_{study.study_name}_{trial.number}"
        path = sweep_dir / "experiment" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            experiment_yaml(trial.user_attrs.get("overrides", []), study, trial, sweep_dir, name)
        )
        paths.append(path)
    if single:
        results: dict[str, Any] = {
            "name": "optuna",
            "best_params": best[0].params,
            "best_value": best[0].value,
            "best_trial": best[0].number,
            "metric": _objectives(study)[0],
        }
        log.info(
            "Best trial %d (%s): python train.py --config-dir %s experiment=%s",
            best[0].number,
            _scores(study, best[0]),
            sweep_dir,
            paths[0].stem,
        )
    else:
        results = {
            "name": "optuna",
            "metrics": _objectives(study),
            "directions": [d.name.lower() for d in study.directions],
            "solutions": [
                {"trial": t.number, "params": t.params, "values": list(t.values)} for t in best
            ],
        }
        log.info("Pareto front: %d of %d completed trials", len(best), len(complete))
        for trial, path in zip(best, paths, strict=True):
            log.info(
                "  trial %d (%s): python train.py --config-dir %s experiment=%s",
                trial.number,
                _scores(study, trial),
                sweep_dir,
                path.stem,
            )
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
    return paths
