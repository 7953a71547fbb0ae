"""What a run leaves behind for people and tools, and who may write it.

- The run-dir layout, named once: ``checkpoints/``, ``summary.json``, ``.lock``, ``attempts/``.
- ``Status``: how a job ended (the one vocabulary of train, the sweepers, the launcher and the
  report).
- ``summary.json`` per job, and per sweep a table of its jobs (``summary.csv`` and
  ``summary.md``) rewritten as each job ends; jobs a sweep planned but never started are listed.
- ``RunLock``: one writer per run dir.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import functools
import io
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "ATTEMPTS_DIR",
    "CHECKPOINT_DIR",
    "JOB_SUMMARY",
    "LOCK_FILE",
    "SIGINT_EXIT",
    "SIGTERM_EXIT",
    "SWEEP_PLAN",
    "TEMP_SUFFIX",
    "Outcome",
    "RunAttempt",
    "RunLock",
    "RunLockedError",
    "Status",
    "identifies_only",
    "override_key",
    "one_line",
    "outcome_of",
    "read_job_summary",
    "read_sweep_plan",
    "temp_file",
    "varying_overrides",
    "without_key",
    "write_failure",
    "write_job_summary",
    "write_sweep_plan",
    "write_sweep_summary",
]

log = logging.getLogger(__name__)

# the layout of a run dir (and of each job dir of a sweep)
CHECKPOINT_DIR = "checkpoints"
JOB_SUMMARY = "summary.json"
LOCK_FILE = ".lock"
# a resume's own record (its config, log and, if it fails before it starts, its error)
ATTEMPTS_DIR = "attempts"
# a sweep's jobs, written before any starts: those without a summary are "not started"
SWEEP_PLAN = "jobs.json"


SIGINT_EXIT, SIGTERM_EXIT = 130, 143


class Status(str, Enum):
    """How a job ended, as ``summary.json`` records it."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PRUNED = "pruned"
    INTERRUPTED = "interrupted"
    NOT_STARTED = "not started"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Outcome:
    """How a job ended: its status, the exit code its process ends with, and why."""

    status: Status
    exit_code: int = 0
    error: str | None = None

    @property
    def fields(self) -> dict[str, Any]:
        """The outcome as ``summary.json`` records it."""
        return {"status": self.status, "exit_code": self.exit_code, "error": self.error}


def _is(error: BaseException, module: str, name: str) -> bool:
    """``isinstance(error, module.name)`` without importing the module: an error of a type
    whose module was never imported cannot be of that type."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(error, getattr(loaded, name))


def outcome_of(error: BaseException) -> Outcome:
    """The outcome of a job that raised ``error``.

    - Lightning turns SIGTERM into ``SIGTERMException`` at the next batch boundary, and Ctrl-C
      into ``sys.exit(1)`` raised while it handles the ``KeyboardInterrupt``: ``interrupted``,
      130 / 143 as shells report a process ended by SIGINT / SIGTERM;
    - ``optuna.TrialPruned`` (an Optuna search stopped a hopeless trial early): ``pruned``;
    - anything else: ``failed``, exit code 1, the one-line error.
    """
    if _is(error, "lightning.pytorch.utilities.exceptions", "SIGTERMException"):
        return Outcome(Status.INTERRUPTED, SIGTERM_EXIT, "interrupted by SIGTERM")
    # Workaround: Lightning ends a fit stopped by Ctrl-C with sys.exit(1) (measured on lightning
    # 2.6.6; tests/test_upstream.py::
    # test_lightning_ends_a_fit_interrupted_by_ctrl_c_with_exit_status_1)
    if isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt):
        return Outcome(Status.INTERRUPTED, SIGINT_EXIT, "interrupted by Ctrl-C")
    if _is(error, "optuna", "TrialPruned"):
        return Outcome(Status.PRUNED, 0, f"TrialPruned: {error}")
    return Outcome(Status.FAILED, 1, f"{type(error).__name__}: {error}")


@functools.lru_cache(maxsize=4096)
def override_key(override: str) -> str:
    """The key (or config group) an override sets: ``+model.net.layers=[3]`` ->
    ``model.net.layers``, ``~logger`` -> ``logger``, ``model/optimizer=sgd`` -> ``model/optimizer``
    (Hydra's own parser)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (parsed,) = OverridesParser.create().parse_overrides([override])
    return str(parsed.key_or_group)


def without_key(overrides: Iterable[str], key: str) -> list[str]:
    """The overrides that do not set ``key`` (``ckpt_path``: a job as it is, however it ran)."""
    return [o for o in overrides if override_key(o) != key]


# overrides that tell jobs apart without describing them (Hydra's, the Optuna trial number) or
# say how a job ran rather than what it is (ckpt_path=last: a requeued or rerun job resumed)
_IDENTITY = ("hydra.", "hydra/", "optuna_trial", "ckpt_path")


def identifies_only(key: str) -> bool:
    """Whether an override of ``key`` only tells a job apart or says how it ran (Hydra's own
    keys, the Optuna trial number, ``ckpt_path``): never part of what a sweep varies or shares."""
    return key.startswith(_IDENTITY)


def varying_overrides(jobs: Sequence[Sequence[str]]) -> list[list[str]]:
    """Per job, its overrides of the keys whose value is not the same in every job (a key set in
    some jobs only varies too): what a sweep varies. One job: all its overrides."""
    if len(jobs) < 2:
        return [list(job) for job in jobs]
    parsed = [
        {override_key(o): o for o in job if not identifies_only(override_key(o))} for job in jobs
    ]
    keys = list(dict.fromkeys(key for job in parsed for key in job))
    varied = [key for key in keys if len({job.get(key) for job in parsed}) > 1]
    return [[job[key] for key in varied if key in job] for job in parsed]


TEMP_SUFFIX = ".tmp"


def temp_file(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place:
    ``.<name>.<host>.<pid>.tmp`` beside it, so that its owner is known
    (``cnnzoo.checkpoint.remove_stale_temp_files``)."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}{TEMP_SUFFIX}")


def write_failure(error: BaseException) -> str:
    """Why a write failed, in words: the OS error somewhere in the chain (``torch.save`` on a
    full disk raises a ``RuntimeError`` whose context is the ``OSError``), by its message and
    errno name (``No space left on device (ENOSPC)``); else the error's type and first line."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        if isinstance(current, OSError) and current.errno is not None:
            name = errno.errorcode.get(current.errno, str(current.errno))
            return f"{current.strerror or os.strerror(current.errno)} ({name})"
        seen.append(current)
        current = current.__cause__ or current.__context__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _write_atomically(path: Path, text: str) -> None:
    """Readers (a report, a sweep's other jobs) never see a half-written file. A write that
    fails (full disk, read-only folder) leaves no temporary file and the previous file as it
    was, and is one ``UserError`` naming the file and the reason."""
    temp = temp_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(text)
        os.replace(temp, path)
    except OSError as error:
        from cnnzoo.errors import UserError

        with contextlib.suppress(OSError):
            temp.unlink()
        raise UserError(f"could not write {path}: {write_failure(error)}") from error


def write_job_summary(output_dir: str | Path, record: dict[str, Any]) -> Path:
    path = Path(output_dir) / JOB_SUMMARY
    _write_atomically(path, json.dumps(record, indent=2, default=str) + "\n")
    return path


def read_job_summary(output_dir: str | Path) -> dict[str, Any] | None:
    """A job's record; None when it has none or an unreadable one (warned, naming the file)."""
    path = Path(output_dir) / JOB_SUMMARY
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        log.warning("%s cannot be read (%s): skipped", path, error)
        return None
    if not isinstance(record, dict):
        log.warning("%s is not a job record: skipped", path)
        return None
    if record.get("status") == Status.RUNNING and RunLock.is_held(path.parent) is False:
        # written when the job started; no process holds the run any more, and none wrote how
        # it ended: it was killed (kill -9, out of memory, a lost node) or is being resumed
        record = {
            **record,
            "status": Status.INTERRUPTED,
            "error": f"{RunLock.holder_of(path.parent / LOCK_FILE, record)} ended without "
            "recording how (killed: kill -9, out of memory, a lost node)",
        }
    return record


def write_sweep_plan(sweep_dir: str | Path, jobs: Iterable[Sequence[str]]) -> None:
    """The jobs a sweep will run (their overrides, by job number), before any starts."""
    plan = {str(number): list(job) for number, job in enumerate(jobs)}
    _write_atomically(Path(sweep_dir) / SWEEP_PLAN, json.dumps(plan, indent=2) + "\n")


def read_sweep_plan(sweep_dir: str | Path) -> dict[str, list[str]]:
    """The jobs ``write_sweep_plan`` wrote; empty (warned) when the file is missing or damaged."""
    path = Path(sweep_dir) / SWEEP_PLAN
    if not path.is_file():
        return {}
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        log.warning(
            "%s cannot be read (%s): its jobs that never started are not listed", path, error
        )
        return {}
    if not isinstance(plan, dict) or not all(
        isinstance(job, list) and all(isinstance(o, str) for o in job) for job in plan.values()
    ):
        log.warning("%s is not a sweep plan: its jobs that never started are not listed", path)
        return {}
    return {str(number): job for number, job in plan.items()}


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
        record = read_job_summary(path.parent)
        if record is not None:
            jobs.append({"job": path.parent.name, **record})
    seen = {job["job"] for job in jobs}
    for number, overrides in read_sweep_plan(sweep_dir).items():
        if number not in seen:
            jobs.append({"job": number, "overrides": overrides, "status": Status.NOT_STARTED})
    jobs.sort(key=lambda job: (len(job["job"]), job["job"]))
    metric_names = sorted({name for job in jobs for name in job.get("metrics", {})})
    # the table shows what the sweep varies; summary.json keeps each job's full list
    varied = varying_overrides([job.get("overrides", []) for job in jobs])
    columns = ["job", "overrides", "status", *metric_names, "best_ckpt", "error"]
    rows = [
        {
            "job": job["job"],
            "overrides": " ".join(overrides),
            "status": str(job.get("status", "")),
            **{name: job.get("metrics", {}).get(name) for name in metric_names},
            "best_ckpt": job.get("best_ckpt"),
            "error": job.get("error"),
        }
        for job, overrides in zip(jobs, varied, strict=True)
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


# --- one writer per run dir ---------------------------------------------------------------------


class RunLockedError(Exception):
    """Another live process holds the run dir's lock."""


class RunLock:
    """``<run dir>/.lock``, held (``flock``) for the life of a run by the process that writes it.

    A second process refuses at once, naming the holder's pid and host. The kernel releases a
    dead holder's ``flock``, so a lock left by a killed run is taken over (with a warning naming
    the old holder). On a filesystem without ``flock`` (some NFS mounts) the lock is skipped
    with a warning: it protects, it never stops a run that could otherwise write.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    @staticmethod
    def holder_of(path: Path, info: dict[str, Any] | None = None) -> str:
        """``pid <pid> on <host>`` from the lock file (or ``info``, a record that names them)."""
        if not (info and "pid" in info):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                return "another process"
        if isinstance(info, dict) and "pid" in info and "host" in info:
            return f"pid {info['pid']} on {info['host']}"
        return "another process"

    @staticmethod
    def is_held(run_dir: str | Path) -> bool | None:
        """Whether a live process holds ``run_dir``'s lock (None: this filesystem cannot tell)."""
        try:
            fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            return True if error.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN) else None
        finally:
            os.close(fd)  # (closing it releases a lock this took)
        return False

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise RunLockedError(
                    f"{self.path.parent} is being written by {self.holder_of(self.path)} "
                    f"(lock {self.path}): one process per run; wait for it, or stop it"
                ) from error
            log.warning("%s: cannot lock the run dir (%s); going on unlocked", self.path, error)
            return self
        previous = os.read(fd, 4096).decode(errors="replace").strip()
        if previous:
            log.warning(
                "%s was last held by %s, which is gone: taken over",
                self.path,
                self.holder_of(self.path),
            )
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # an empty lock file: released cleanly
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


# --- this process's attempt at a run dir --------------------------------------------------------

ATTEMPT_RECORD = "attempt.json"


class RunAttempt:
    """This process's attempt at writing ``run_dir``: the run's record changes only once the
    attempt has started (``start``: its checks passed, the run dir's lock is taken).

    A resume writes Hydra's record of itself (config, log) to ``attempt_dir``
    (``<run>/attempts/<time>/``); ``start`` makes that config the run's and continues the run's
    ``train.log``. An attempt that fails before it starts records its error in its own
    ``attempt.json`` and leaves the run's ``summary.json``, config and logs as they were.
    Only the process that writes the run (global rank 0) takes the lock.
    """

    def __init__(
        self,
        run_dir: str | Path,
        attempt_dir: str | Path | None = None,
        *,
        writer: bool = True,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.attempt_dir = None if attempt_dir is None else Path(attempt_dir)
        self.writer = writer
        # the job's record as it starts (its overrides): written as ``running`` by ``start``, so
        # that a job killed without a word is told from one that never started
        self.record = record
        self.started = False
        self._lock = RunLock(self.run_dir)
        self._handler: logging.Handler | None = None

    def start(self) -> None:
        from cnnzoo.errors import UserError

        if self.writer:
            try:
                self._lock.acquire()
            except RunLockedError as error:
                raise UserError(str(error)) from None
        if self.writer:
            from cnnzoo.checkpoint import remove_stale_temp_files

            for removed in remove_stale_temp_files(self.run_dir / CHECKPOINT_DIR):
                log.info("Removed %s, left by a save that was killed", removed)
        if self.attempt_dir is not None and self.writer:
            self._promote(self.attempt_dir)
        self.started = True
        if self.writer and self.record is not None:
            self.write_record(
                {
                    **self.record,
                    "status": Status.RUNNING,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                }
            )

    def _promote(self, attempt_dir: Path) -> None:
        """The attempt's config becomes the run's; the run's ``train.log`` continues."""
        for saved in sorted((attempt_dir / ".hydra").glob("*.yaml")):
            _write_atomically(self.run_dir / ".hydra" / saved.name, saved.read_text())
        mine = attempt_dir / "train.log"
        handlers = [
            h
            for h in logging.getLogger().handlers
            if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == mine.resolve()
        ]
        run_log = self.run_dir / "train.log"
        if mine.is_file():
            for handler in handlers:
                handler.flush()
            with open(run_log, "a") as f:
                f.write(mine.read_text())
        handler = logging.FileHandler(run_log, mode="a")
        if handlers:
            handler.setFormatter(handlers[0].formatter)
            handler.setLevel(handlers[0].level)
        logging.getLogger().addHandler(handler)
        self._handler = handler

    def write_record(self, record: dict[str, Any]) -> Path:
        """The job's record: the run's ``summary.json`` once started (or for a fresh run), else
        the attempt's own ``attempt.json``."""
        if self.started or self.attempt_dir is None:
            return write_job_summary(self.run_dir, record)
        path = self.attempt_dir / ATTEMPT_RECORD
        _write_atomically(path, json.dumps(record, indent=2, default=str) + "\n")
        return path

    def close(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        self._lock.release()
