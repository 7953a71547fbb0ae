"""Gather runs into one table and plots: ``python -m cnnzoo.report <sweep dir, runs dir or logs/>``.

Every ``summary.json`` under the directory is a run. The report — ``report.csv``, ``report.md``,
``acc_vs_params.png``, ``acc_vs_flops.png``, ``learning_curves.png`` and, for an Optuna search,
``trials.csv`` and the study's plots — goes to ``<dir>/report/``. It reads only what the runs
recorded (``summary.json``, the CSV logger's ``metrics.csv``, the Optuna study), so it works
offline and never rebuilds a network. ``ReportOnSweepEnd`` writes it at a sweep's end.
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cnnzoo import plots
from cnnzoo.records import (
    Status,
    identifies_only,
    one_line,
    override_key,
    read_job_summary,
    read_sweep_plan,
    varying_overrides,
    write_failure,
)
from cnnzoo.study import STUDY_DB, study_storage, sweep_study

__all__ = ["ReportOnSweepEnd", "collect_runs", "main", "run_labels", "write_report"]

log = logging.getLogger(__name__)

# the accuracy the plots show: the first of these that a run logged
ACCURACY_KEYS = ("test/acc", "val/acc_best", "val/acc")
CURVE_METRICS = ("val/acc", "val/loss", "train/loss_epoch")
STAT_METRICS = ("model/params", "model/flops")


def _yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path))
    except Exception as error:  # a damaged file: OmegaConf's and yaml's errors of every kind
        log.warning("%s cannot be read (%s): left out of the report", path, error)
        return None


def _first(metrics: dict[str, float], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if metrics.get(key) is not None:
            return metrics[key]
    return None


def _read_metrics_csv(run_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, float]]:
    """The CSV logger's per-epoch curves, and the model's size and cost that ``ModelStats``
    logged, from every ``csv/version_<n>`` of the run in order."""
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    stats: dict[str, float] = {}
    for metrics_csv in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        try:
            with open(metrics_csv, newline="") as f:
                for line in csv.DictReader(f):
                    for name in CURVE_METRICS:
                        if line.get(name) and line.get("epoch"):
                            curves[name].append((int(float(line["epoch"])), float(line[name])))
                    for name in STAT_METRICS:
                        if line.get(name):
                            stats[name] = float(line[name])
        except (OSError, ValueError, csv.Error) as error:
            log.warning(
                "%s cannot be read (%s): its rows from there on are left out", metrics_csv, error
            )
    return dict(curves), stats


def collect_runs(root: Path) -> list[dict[str, Any]]:
    """One row per run under ``root``: identity, label, status, metrics, size, cost, speed."""
    rows = []
    for summary in sorted(root.rglob("summary.json")):
        run_dir = summary.parent
        if "report" in run_dir.relative_to(root).parts:
            continue
        record = read_job_summary(run_dir)  # a damaged one: None, and a warning naming it
        if record is None or ("metrics" not in record and "status" not in record):
            continue
        metrics = {k: v for k, v in (record.get("metrics") or {}).items() if "_step" not in k}
        hydra_cfg = _yaml(run_dir / ".hydra" / "hydra.yaml") or {}
        choices = (hydra_cfg.get("hydra") or {}).get("runtime", {}).get("choices", {})
        curves, stats = _read_metrics_csv(run_dir)
        stats.update({k: v for k, v in metrics.items() if k in STAT_METRICS})
        params, flops = stats.get("model/params"), stats.get("model/flops")
        rows.append(
            {
                "run": str(run_dir.relative_to(root)) or ".",
                "model": choices.get("model") or "",
                "overrides": list(record.get("overrides", [])),
                "status": record.get("status", ""),
                "accuracy": _first(metrics, ACCURACY_KEYS),
                "params": None if params is None else int(params),
                "flops": None if flops is None else int(flops),
                "train_time_s": record.get("train_time_s"),
                "images_per_s": metrics.get("train/images_per_s"),
                "metrics": metrics,
                "curves": curves,
            }
        )
    rows += _not_started(root, {row["run"] for row in rows})
    labels, _ = run_labels([row["overrides"] for row in rows])
    for row, label in zip(rows, labels, strict=True):
        row["varied"] = label
        row["label"] = " ".join(label) or row["model"] or row["run"]
    _disambiguate(rows)
    return rows


def _short_value(value: str) -> str:
    """Numbers as a person would write them (``0.0012345678`` → ``0.00123``)."""
    try:
        number = float(value)
    except ValueError:
        return value
    if value.lstrip("-").isdigit():
        return value
    return f"{number:.3g}"


def _not_started(sweep_dir: Path, recorded: set[str]) -> list[dict[str, Any]]:
    """The jobs a stopped sweep planned (``jobs.json``) and never started."""
    jobs = read_sweep_plan(sweep_dir)
    return [
        {
            "run": number,
            "model": "",
            "overrides": list(overrides),
            "status": Status.NOT_STARTED.value,
            "accuracy": None,
            "params": None,
            "flops": None,
            "train_time_s": None,
            "images_per_s": None,
            "metrics": {},
            "curves": {},
        }
        for number, overrides in jobs.items()
        if number not in recorded
    ]


def run_labels(overrides: list[list[str]]) -> tuple[list[list[str]], list[str]]:
    """What tells each run apart: per run, the overrides of the keys whose value is not the same
    in every run (``cnnzoo.records.varying_overrides``; keys shortened to their last part where
    that stays unambiguous, numbers to 3 significant digits); and the overrides every run shares.

    ``[["model=lenet", "seed=1", "debug=limit"], ["model=mlp", "seed=1", "debug=limit"]]`` →
    ``([["model=lenet"], ["model=mlp"]], ["seed=1", "debug=limit"])``.
    """
    varied = varying_overrides(overrides) if len(overrides) > 1 else [[] for _ in overrides]
    keys = list(dict.fromkeys(override_key(o) for run in varied for o in run))
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    short = {k: t if tails.count(t) == 1 else k for k, t in zip(keys, tails, strict=True)}
    labels = [
        [f"{short[override_key(o)]}={_short_value(o.partition('=')[2])}" for o in run]
        for run in varied
    ]
    shared = [
        o
        for o in (overrides[0] if overrides else [])
        if not identifies_only(override_key(o)) and override_key(o) not in keys
    ]
    return labels, shared


def _disambiguate(rows: list[dict[str, Any]]) -> None:
    """Runs with the same label (the same overrides, e.g. repeated in a runs dir) get their dir."""
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row["label"]] += 1
    for row in rows:
        if counts[row["label"]] > 1:
            row["label"] = f"{row['label']} ({row['run']})"


def _architectures(rows: list[dict[str, Any]], cost: str) -> list[tuple[str, float, float]]:
    """One ``(label, cost, accuracy)`` point per network (model config and size): its best run,
    labelled by the overrides its runs share (what chose the network), e.g. ``model=lenet``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["accuracy"] is not None and row[cost]:
            groups[(row["model"], row["params"], row["flops"])].append(row)
    points = []
    for runs in groups.values():
        best = max(runs, key=lambda r: r["accuracy"])
        shared = set.intersection(*(set(r["varied"]) for r in runs))
        label = " ".join(p for p in best["varied"] if p in shared) or best["model"] or best["run"]
        if len(runs) > 1:
            label += f" (best of {len(runs)})"
        points.append((label, float(best[cost]), float(best["accuracy"])))
    return sorted(points, key=lambda p: (p[1], p[2]))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def _write_table(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _markdown(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]


def _studies(root: Path) -> list[Any]:
    """The Optuna studies of a search's sweep dir: the one its ``multirun.yaml`` names
    (``cnnzoo.study.sweep_study``: in SQLite there or in a database server), else every study in
    ``root/optuna.db``."""
    search = sweep_study(root)
    if search is None and not (root / STUDY_DB).is_file():
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if search is not None:
        storage, name = search
        try:
            return [optuna.load_study(study_name=name, storage=storage)]
        except Exception as error:  # the study's database is out of reach from here
            log.warning("The study %s cannot be read: %s", name, one_line(str(error)))
            return []
    storage = study_storage(root)
    return [
        optuna.load_study(study_name=summary.study_name, storage=storage)
        for summary in optuna.get_all_study_summaries(storage)
    ]


def _trial_values(study: Any, trial: Any) -> dict[str, Any]:
    """A trial's objective values by metric name (one ``value`` column for one objective)."""
    if len(study.directions) == 1:
        return {"value": trial.value}
    names = study.metric_names or [f"value {i}" for i in range(len(study.directions))]
    values = trial.values or [None] * len(names)
    return dict(zip(names, values, strict=True))


def _search_section(studies: list[Any], rows: list[dict[str, Any]], out: Path) -> list[str]:
    """``trials.csv``, the studies' plots and the best trial, as lines of ``report.md``."""
    import optuna

    trials = [
        {
            "study": study.study_name,
            "trial": trial.number,
            "state": trial.state.name,
            **_trial_values(study, trial),
            **{f"param:{k}": v for k, v in trial.params.items()},
            "note": trial.user_attrs.get("note", ""),
        }
        for study in studies
        for trial in study.trials
    ]
    if not trials:
        return []
    columns = list(dict.fromkeys(k for t in trials for k in t))
    _write_table(out / "trials.csv", columns, trials)
    md = ["", "## Search", "", *_markdown(columns, trials)]
    for study in studies:
        prefix = "" if len(studies) == 1 else f"{study.study_name}_"
        metric = study.user_attrs.get("metric") or "value"
        for name, figure in plots.study_figures(study, metric=metric).items():
            plots.save(figure, out / f"{prefix}{name}.png")
            md += ["", f"![{name.removeprefix('optuna_')}]({prefix}{name}.png)"]
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            continue
        if len(study.directions) > 1:
            names = ", ".join(study.metric_names or [])
            md += ["", f"Pareto front of {study.study_name} ({names}):"]
            for trial in sorted(study.best_trials, key=lambda t: t.number):
                values = ", ".join(f"{v:.4g}" for v in trial.values)
                params = ", ".join(f"`{k}` = {v}" for k, v in trial.params.items())
                md += [f"- trial **{trial.number}** ({values}): {params}"]
            continue
        best = study.best_trial
        md += ["", f"Best trial of {study.study_name}: **{best.number}**"]
        md[-1] += f" ({metric} = {best.value:.4f})"
        md += [f"- `{k}` = {v}" for k, v in best.params.items()]
        job = next((r for r in rows if r["run"] == str(best.number)), None)
        if job:
            md += [f"- params: {_cell(job['params'])}, FLOPs: {_cell(job['flops'])}"]
    return md


def write_report(root: str | Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """Write the report of every run under ``root`` (``rows``: ``collect_runs(root)``, when
    already collected) to ``root/report`` and return that dir."""
    root = Path(root)
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):  # figures an earlier report drew that this one may not
        stale.unlink(missing_ok=True)  # (another search worker may be writing the same report)
    rows = collect_runs(root) if rows is None else rows
    _, shared = run_labels([row["overrides"] for row in rows])
    metric_names = sorted({name for row in rows for name in row["metrics"]})
    columns = [
        "run",
        "label",
        "model",
        "overrides",
        "status",
        "params",
        "flops",
        "train_time_s",
        "images_per_s",
        *metric_names,
    ]
    table = [{**row, **row["metrics"], "overrides": " ".join(row["overrides"])} for row in rows]
    _write_table(out / "report.csv", columns, table)
    short = ["run", "label", "status", "accuracy", "params", "flops", "train_time_s"]
    md = [
        f"# Report: {root}",
        "",
        f"{len(rows)} runs. `label`: the overrides that differ between runs"
        + (f"; every run also had `{' '.join(shared)}`" if shared and len(rows) > 1 else "")
        + f". `accuracy` is the first of {', '.join(ACCURACY_KEYS)} that a run logged; "
        "every metric is in report.csv.",
        "",
    ]
    md += _markdown(short, rows)

    for cost, label in (("params", "parameters"), ("flops", "forward FLOPs per image")):
        points = _architectures(rows, cost)
        if len(points) > 1:  # a comparison of networks
            figure = plots.scatter_figure(
                points, xlabel=label, ylabel="accuracy", title=f"Accuracy against {label}"
            )
            plots.save(figure, out / f"acc_vs_{cost}.png")
            md += ["", f"![accuracy against {label}](acc_vs_{cost}.png)"]
    curves = {row["label"]: row["curves"] for row in rows if row["curves"]}
    if curves:
        figure = plots.learning_curves_figure(curves, metrics=CURVE_METRICS)
        plots.save(figure, out / "learning_curves.png")
        md += ["", "![learning curves](learning_curves.png)"]
    md += _search_section(_studies(root), rows, out)
    (out / "report.md").write_text("\n".join(md) + "\n")
    log.info("Report of %d runs written to %s", len(rows), out)
    return out


class ReportOnSweepEnd(Callback):
    """Hydra callback: a multirun ends with its report in the sweep dir.

    Hydra's basic sweeper raises the first failed job's error once its jobs have run, and then
    never calls ``on_multirun_end``; so once a job has failed, the report is rewritten after each
    job, and the last one leaves it complete.
    """

    # Workaround: Hydra's basic sweeper never ends a multirun whose job failed (measured on
    # hydra-core 1.3.8; tests/test_upstream.py::
    # test_hydras_basic_sweeper_never_ends_a_multirun_whose_job_failed)
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        records = (read_job_summary(path.parent) for path in sweep_dir.glob("*/summary.json"))
        statuses = [record.get("status") for record in records if record is not None]
        if Status.FAILED in statuses:  # (a stopped sweep's sweeper writes its own report)
            self._write(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(Path(config.hydra.sweep.dir))

    @staticmethod
    def _write(sweep_dir: Path) -> None:
        try:
            write_report(sweep_dir)
        except Exception as error:  # a report must never turn a finished sweep into a failure
            log.warning("Could not write the sweep report: %s: %s", type(error).__name__, error)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnzoo.report", description=__doc__)
    parser.add_argument("dir", type=Path, help="a sweep dir, a runs dir or logs/")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"{args.dir}: no such directory")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = collect_runs(args.dir)
    if not rows:
        parser.exit(1, f"no runs (summary.json files) found under {args.dir}\n")
    try:
        out = write_report(args.dir, rows)
    except OSError as error:
        parser.exit(1, f"could not write {args.dir / 'report'}: {write_failure(error)}\n")
    print(f"Wrote {out}/report.md")


if __name__ == "__main__":
    main()
