"""Gather runs into one table and plots: ``python -m cnnzoo.report <sweep dir, runs dir or logs/>``.

Every ``summary.json`` under the directory is a run. The report — ``report.csv``, ``report.md``,
``acc_vs_params.png``, ``acc_vs_flops.png``, ``learning_curves.png`` and, for an Optuna search,
``trials.csv`` and ``trials.png`` — goes to ``<dir>/report/``. It reads only files the CSV logger
and the run records write, so it works offline. ``ReportOnSweepEnd`` writes it at a sweep's end.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cnnzoo import plots

__all__ = ["ReportOnSweepEnd", "collect_runs", "main", "net_cost", "write_report"]

log = logging.getLogger(__name__)

STUDY_DB = "optuna.db"
# the accuracy the plots show: the first of these that a run logged
ACCURACY_KEYS = ("test/acc", "val/acc_best", "val/acc")
CURVE_METRICS = ("val/acc", "val/loss", "train/loss_epoch")


def _yaml(path: Path) -> Any:
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else None


def _first(metrics: dict[str, float], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if metrics.get(key) is not None:
            return metrics[key]
    return None


def net_cost(cfg: DictConfig) -> tuple[int, int]:
    """(parameters, forward FLOPs per image) of the network a training config describes."""
    from hydra.utils import instantiate

    import cnnzoo.config  # noqa: F401  (registers the resolvers the model config uses)
    from cnnzoo.models.stats import count_flops, count_parameters

    net = instantiate(cfg.model.net)
    # the data node alone: its paths (data_dir) do not change the shapes
    data = OmegaConf.merge(cfg.data, {"data_dir": "."})
    probe = OmegaConf.create(
        {"data": data, "c": "${datamodule:in_channels}", "s": "${datamodule:image_size}"}
    )
    return count_parameters(net), count_flops(net, (int(probe.c), int(probe.s), int(probe.s)))


def _cost_from_config(run_dir: Path) -> tuple[int | None, int | None]:
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        return None, None
    try:
        return net_cost(OmegaConf.load(saved))
    except Exception as error:  # an old or foreign config: the report goes on without its cost
        log.warning("Could not rebuild the network of %s: %s", run_dir, error)
        return None, None


def collect_runs(root: Path) -> list[dict[str, Any]]:
    """One row per run under ``root``: identity, status, metrics, size, cost and speed."""
    rows = []
    for summary in sorted(root.rglob("summary.json")):
        run_dir = summary.parent
        if "report" in run_dir.relative_to(root).parts:
            continue
        record = json.loads(summary.read_text())
        if "metrics" not in record and "status" not in record:
            continue
        metrics = {k: v for k, v in (record.get("metrics") or {}).items() if "_step" not in k}
        hydra_cfg = _yaml(run_dir / ".hydra" / "hydra.yaml") or {}
        choices = (hydra_cfg.get("hydra") or {}).get("runtime", {}).get("choices", {})
        model = choices.get("model") or ""
        params = metrics.get("model/params", record.get("params"))
        flops = metrics.get("model/flops", record.get("flops"))
        if params is None or flops is None:
            params, flops = _cost_from_config(run_dir)
        rows.append(
            {
                "run": str(run_dir.relative_to(root)) or ".",
                "model": model,
                "overrides": " ".join(record.get("overrides", [])),
                "status": record.get("status", ""),
                "accuracy": _first(metrics, ACCURACY_KEYS),
                "params": params,
                "flops": flops,
                "train_time_s": record.get("train_time_s"),
                "images_per_s": next(
                    (v for k, v in metrics.items() if "images_per_s" in k or "throughput" in k),
                    record.get("images_per_s"),
                ),
                "metrics": metrics,
                "dir": run_dir,
            }
        )
    return rows


def _label(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The architecture's name; runs of one model config that differ in the net get their run."""
    same = [r for r in rows if r["model"] == row["model"] and r["params"] != row["params"]]
    return f"{row['model'] or row['run']} ({row['run']})" if same else row["model"] or row["run"]


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


def _curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for metrics_csv in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with open(metrics_csv, newline="") as f:
            for line in csv.DictReader(f):
                for name in CURVE_METRICS:
                    if line.get(name) and line.get("epoch"):
                        curves[name].append((int(float(line["epoch"])), float(line[name])))
    return dict(curves)


def _study_trials(root: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The trials of every Optuna study stored in ``root/optuna.db`` (a search's sweep dir)."""
    db = root / STUDY_DB
    if not db.is_file():
        return [], None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db}"
    trials = []
    metric = None
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        metric = study.user_attrs.get("metric", metric)
        for trial in study.trials:
            trials.append(
                {
                    "study": summary.study_name,
                    "trial": trial.number,
                    "state": trial.state.name,
                    "value": trial.value,
                    **{f"param:{k}": v for k, v in trial.params.items()},
                    "note": trial.user_attrs.get("note", ""),
                }
            )
    return trials, metric


def write_report(root: str | Path) -> Path:
    """Write the report of every run under ``root`` to ``root/report`` and return that dir."""
    root = Path(root)
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows = collect_runs(root)
    metric_names = sorted({name for row in rows for name in row["metrics"]})
    columns = [
        "run",
        "model",
        "overrides",
        "status",
        "params",
        "flops",
        "train_time_s",
        "images_per_s",
        *metric_names,
    ]
    table = [{**row, **row["metrics"]} for row in rows]
    _write_table(out / "report.csv", columns, table)
    short = [
        "run",
        "model",
        "overrides",
        "status",
        "accuracy",
        "params",
        "flops",
        "train_time_s",
        "images_per_s",
    ]
    md = [
        f"# Report: {root}",
        "",
        f"{len(rows)} runs. `accuracy` is the first of "
        f"{', '.join(ACCURACY_KEYS)} that a run logged; every metric is in report.csv.",
        "",
    ]
    md += _markdown(short, rows)

    done = [r for r in rows if r["accuracy"] is not None]
    for cost, label in (("params", "parameters"), ("flops", "FLOPs per image")):
        best: dict[str, tuple[str, float, float]] = {}
        for row in done:
            if row[cost]:
                name = _label(row, done)
                if name not in best or row["accuracy"] > best[name][2]:
                    best[name] = (name, float(row[cost]), float(row["accuracy"]))
        if best:
            figure = plots.scatter_figure(list(best.values()), xlabel=label, ylabel="accuracy")
            plots.save(figure, out / f"acc_vs_{cost}.png")
            md += ["", f"![accuracy vs {label}](acc_vs_{cost}.png)"]
    curves = {row["run"]: _curves(row["dir"]) for row in rows}
    curves = {run: c for run, c in curves.items() if c}
    if curves:
        plots.save(plots.learning_curves_figure(curves), out / "learning_curves.png")
        md += ["", "![learning curves](learning_curves.png)"]

    trials, metric = _study_trials(root)
    if trials:
        trial_columns = list(dict.fromkeys(k for t in trials for k in t))
        _write_table(out / "trials.csv", trial_columns, trials)
        points = [(t["trial"], t["value"], t["state"]) for t in trials]
        plots.save(plots.trials_figure(points, metric=metric or "value"), out / "trials.png")
        md += ["", "## Search", "", *_markdown(trial_columns, trials), "", "![trials](trials.png)"]
        complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
        if complete:
            maximise = metric is None or "loss" not in metric
            top = (max if maximise else min)(complete, key=lambda t: t["value"])
            job = next((r for r in rows if r["run"] == str(top["trial"])), None)
            md += ["", f"Best trial: **{top['trial']}** ({metric} = {top['value']:.4f})"]
            md += [f"- `{k[6:]}` = {v}" for k, v in top.items() if k.startswith("param:")]
            if job:
                md += [f"- params: {_cell(job['params'])}, FLOPs: {_cell(job['flops'])}"]
    (out / "report.md").write_text("\n".join(md) + "\n")
    log.info("Report of %d runs written to %s", len(rows), out)
    return out


class ReportOnSweepEnd(Callback):
    """Hydra callback: a multirun ends with its report in the sweep dir.

    Hydra's basic sweeper raises the first failed job's error once its jobs have run, and then
    never calls ``on_multirun_end``; so once a job has failed, the report is rewritten after each
    job, and the last one leaves it complete.
    """

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        statuses = [
            json.loads(path.read_text()).get("status") for path in sweep_dir.glob("*/summary.json")
        ]
        if any(status not in ("completed", "pruned", "running") for status in statuses):
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
    out = write_report(args.dir)
    if not collect_runs(args.dir):
        parser.exit(1, f"no runs (summary.json files) found under {args.dir}\n")
    print(f"Wrote {out}/report.md")


if __name__ == "__main__":
    main()
