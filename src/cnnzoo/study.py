"""Where a search's Optuna study is stored, and how every process that uses it opens it.

Three kinds of process share a study: the search workers (the ``cnnzoo_optuna`` sweeper; one or
several, on one machine or several), the training jobs (the ``OptunaTrial`` callback reports
each epoch to its trial, from whatever node the job runs on) and the report. They all find the
study with ``study_storage``: ``hydra.sweeper.storage`` when set, else
``sqlite:///<sweep dir>/optuna.db``.

SQLite is right for one machine. On a shared filesystem (NFS, Lustre, GPFS: a cluster's home or
scratch) its file locks are unreliable, so workers or jobs on several nodes writing one study
can corrupt it or fail with ``database is locked``: use a database server there,
``postgresql+psycopg2://user:password@host:5432/db`` (the driver comes with cnnzoo's ``optuna``
extra; ``scripts/services/postgres.sh`` starts one on this machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["STUDY_DB", "open_storage", "study_storage", "sweep_study"]

STUDY_DB = "optuna.db"
# a writer waits this long for SQLite's lock (several jobs of a parallel search report at once)
SQLITE_TIMEOUT_S = 60


def study_storage(sweep_dir: str | Path, storage: str | None = None) -> str:
    """The study's storage URL: ``storage``, or SQLite in the sweep dir."""
    return storage or f"sqlite:///{Path(sweep_dir).resolve()}/{STUDY_DB}"


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: Callable[[Any, Any], None] | None = None,
) -> Any:
    """An ``optuna.storages.RDBStorage`` for ``url`` (SQLite waits for its lock rather than
    failing at once). With ``heartbeat_interval``, a running trial whose worker has recorded no
    heartbeat for ``grace_period`` seconds is stale: ``optuna.storages.fail_stale_trials``
    fails it and calls ``stale_trial_callback``."""
    import warnings

    import optuna

    engine_kwargs = (
        {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    )
    with warnings.catch_warnings():
        # the heartbeat is marked experimental in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=stale_trial_callback,
        )


def sweep_study(sweep_dir: str | Path) -> tuple[str, str] | None:
    """(storage URL, study name) of the search whose sweep dir this is, read from the
    ``multirun.yaml`` the sweeper wrote; None for another kind of sweep."""
    from omegaconf import OmegaConf

    saved = Path(sweep_dir) / "multirun.yaml"
    if not saved.is_file():
        return None
    sweeper = OmegaConf.select(OmegaConf.load(saved), "hydra.sweeper")
    if sweeper is None or "cnnzoo_optuna_sweeper" not in str(sweeper.get("_target_")):
        return None
    # the storage may name an environment variable (${oc.env:...}), which resolves here too
    return study_storage(sweep_dir, sweeper.storage), str(sweeper.study_name)
