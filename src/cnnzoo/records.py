"""What a run leaves behind for people and tools: ``summary.json`` per job, and per sweep a table
of its jobs (``summary.csv`` and ``summary.md``) rewritten as each job ends."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "JOB_SUMMARY",
    "one_line",
    "read_job_summary",
    "write_job_summary",
    "write_sweep_summary",
]

JOB_SUMMARY = "summary.json"


def _write_atomically(path: Path, text: str) -> None:
    """Readers (a report, a sweep's other jobs) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def write_job_summary(output_dir: str | Path, record: dict[str, Any]) -> Path:
    path = Path(output_dir) / JOB_SUMMARY
    _write_atomically(path, json.dumps(record, indent=2, default=str) + "\n")
    return path


def read_job_summary(output_dir: str | Path) -> dict[str, Any] | None:
    path = Path(output_dir) / JOB_SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None


def one_line(text: str) -> str:
    """A multi-line error as one table cell: its lines joined, pipes escaped."""
    return " ⏎ ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else one_line(str(value)).replace("|", "\\|")


def write_sweep_summary(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Gather every job's ``summary.json`` under ``sweep_dir`` into one table, in job order."""
    sweep_dir = Path(sweep_dir)
    jobs = []
    for path in sweep_dir.glob(f"*/{JOB_SUMMARY}"):
        record = json.loads(path.read_text())
        jobs.append({"job": path.parent.name, **record})
    jobs.sort(key=lambda job: (len(job["job"]), job["job"]))
    metric_names = sorted({name for job in jobs for name in job.get("metrics", {})})
    # the table shows what the sweep varies; summary.json keeps each job's full list
    shared = (
        set.intersection(*(set(job.get("overrides", [])) for job in jobs))
        if len(jobs) > 1
        else set()
    )
    columns = ["job", "overrides", "status", *metric_names, "best_ckpt", "error"]
    rows = [
        {
            "job": job["job"],
            "overrides": " ".join(o for o in job.get("overrides", []) if o not in shared),
            "status": job.get("status", ""),
            **{name: job.get("metrics", {}).get(name) for name in metric_names},
            "best_ckpt": job.get("best_ckpt"),
            "error": job.get("error"),
        }
        for job in jobs
    ]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    _write_atomically(sweep_dir / "summary.csv", table.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    _write_atomically(sweep_dir / "summary.md", "\n".join(lines) + "\n")
    return rows
