"""A Hydra sweeper that runs an Optuna study, one job per trial, K at a time, from one or many
search processes ("workers") that share the study.

Why our own: hydra-optuna-sweeper 1.2 pins optuna < 3 and cannot prune. This one runs on current
Optuna, takes hydra-optuna-sweeper's settings and search-space syntax (``space.py``), and adds
what long searches on a cluster need:

- **the study's storage** is ``cnnzoo.study.study_storage``: ``hydra.sweeper.storage`` or SQLite
  in the sweep dir; rerunning the same command continues the study;
- **parallel trials** (``n_jobs``): with a submitit launcher (``hydra/launcher=local|slurm``)
  each of the K slots launches its own job and the trial is told to the study as soon as its job
  ends, when the slot takes the next trial; other launchers get batches of K
  (``launcher.launch`` returns when the whole batch has ended; Hydra's basic launcher runs a
  batch one job after another);
- **several workers on one study**: together they run exactly ``n_trials`` (a trial asked beyond
  the study's size in a race is recorded as surplus and never run). Each worker keeps its
  running trials' heartbeat in the storage; a trial whose worker stopped (killed, node lost) is
  failed once its heartbeat is ``grace_period`` s old and retried by a live worker, resuming from
  the failed job's ``checkpoints/last.ckpt``. A worker with nothing left to ask waits for the
  other workers' trials, to retry them if their worker stops. Each worker's sampler is seeded
  with the seed plus its first trial's number, so a continued study or a second worker draws new
  candidates instead of replaying the first ones;
- **pruning**: each job's ``OptunaTrial`` callback reports the validation metric per epoch to
  its trial in the storage and stops the job when the pruner says so (recorded as pruned);
- **failures**: a job that raises, or returns a NaN or no metric, is a failed trial and the
  study goes on, unless more than ``max_failure_rate`` of this worker's trials failed;
- **budget**: ``max_params`` / ``max_flops`` build each candidate network on the meta device and
  reject an oversize one before any training (recorded as pruned, with the reason);
- **results** (``results.py``): the best trial as an experiment config,
  ``<sweep dir>/experiment/best_<study>.yaml`` (several objectives: one per Pareto-optimal trial)
  and ``optimization_results.yaml``.
"""

import contextlib
import io
import logging
import math
import os
import queue
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

# no `from __future__ import annotations`: Hydra loads plugins outside sys.modules, where
# dataclasses cannot resolve string annotations; OmegaConf also needs Optional/Dict here
from typing import Any, Dict, List, Optional  # noqa: UP035

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from cnnzoo.records import one_line, read_job_summary, without_key
from cnnzoo.study import open_storage, study_storage
from hydra_plugins.cnnzoo_optuna_sweeper.results import TRIAL_KEY, write_results
from hydra_plugins.cnnzoo_optuna_sweeper.space import SearchSpace, override_value, search_space

__all__ = ["OptunaSweeper", "OptunaSweeperConf", "beyond_size"]

log = logging.getLogger(__name__)

# metrics the sweeper measures itself (on the meta device) when an objective names them
COST_METRICS = ("model/params", "model/flops")
# a trial's user attributes that the sweeper keeps
NOTE, SURPLUS = "note", "surplus"


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.cnnzoo_optuna_sweeper.sweeper.OptunaSweeper"
    # the sampler and pruner nodes reach the sweeper as configs: it builds the sampler itself
    # (each worker's own seed; GridSampler's grid from the search space)
    _recursive_: bool = False
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}])  # noqa: UP006
    study_name: str = "search"
    # maximize | minimize, or one per objective: [maximize, minimize]
    direction: Any = "maximize"
    # the metrics optimised, one per direction, read from each job's record (summary.json):
    # its metrics, a number it holds (train_time_s), or model/params | model/flops (measured by
    # the sweeper); null: [optimized_metric], the job's return value
    objectives: Optional[List[str]] = None  # noqa: UP006, UP045
    # an Optuna storage URL; null: sqlite:///<sweep dir>/optuna.db (cnnzoo.study.study_storage)
    storage: Optional[str] = None  # noqa: UP045
    # the study's size: trials of every state, of every worker and of earlier runs of it (a
    # trial retried after its worker stopped counts once)
    n_trials: int = 20
    # trials in flight at once (hydra/launcher=local|slurm runs them in parallel)
    n_jobs: int = 1
    # stop (exit 1) once more than this fraction of this worker's trials failed; 1.0: never
    max_failure_rate: float = 1.0
    # a running trial's worker records a heartbeat every heartbeat_interval s; a trial without
    # one for grace_period s is failed and retried (at most max_retry times)
    heartbeat_interval: int = 30
    grace_period: int = 120
    max_retry: int = 3
    sampler: Any = None
    pruner: Any = None
    # reject candidates above these sizes before training (null: no limit)
    max_params: Optional[int] = None  # noqa: UP045
    max_flops: Optional[int] = None  # noqa: UP045
    # the search space: `key: {type: float|int|categorical, ...}` or Hydra's sweep syntax
    params: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006
    # a function `(cfg, trial) -> None` (dotted path) that suggests more parameters, e.g. ones
    # that depend on others; each becomes the override `<name>=<value>`
    custom_search_space: Optional[str] = None  # noqa: UP045


ConfigStore.instance().store(group="hydra/sweeper", name="cnnzoo_optuna", node=OptunaSweeperConf)


@dataclass
class Job:
    """A trial ready to run: its job's overrides and where the job writes."""

    trial: Any
    overrides: list[str]
    job_dir: Path


class Heartbeat:
    """A thread that records a heartbeat for each of this worker's running trials every
    ``interval`` seconds (Optuna's ``RDBStorage.record_heartbeat``), whatever the main thread is
    doing (a job of the basic launcher trains in it)."""

    def __init__(self, storage: Any, study_id: int, interval: int) -> None:
        self.storage, self.study_id, self.interval = storage, study_id, interval
        self.trials: dict[int, int] = {}  # trial number -> trial id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)

    def add(self, number: int) -> None:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self.trials[number] = trial_id

    def remove(self, number: int) -> None:
        with self._lock:
            self.trials.pop(number, None)

    def running(self) -> list[int]:
        with self._lock:
            return sorted(self.trials)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                trial_ids = list(self.trials.values())
            for trial_id in trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as error:  # a database hiccup: the next beat tries again
                    log.warning("Heartbeat of a trial not recorded: %s", one_line(str(error)))

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _counted(trials: list[Any]) -> list[Any]:
    """The trials that make up the study's size: all but the failed ones that were retried and
    the surplus ones."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    with warnings.catch_warnings():  # "experimental" since Optuna 3.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {number for trial in trials for number in Retry.retry_history(trial)}
    fail = optuna.trial.TrialState.FAIL
    return [
        t
        for t in trials
        if not t.user_attrs.get(SURPLUS) and not (t.state == fail and t.number in retried)
    ]


def beyond_size(trials: list[Any], number: int, n_trials: int) -> bool:
    """Whether trial ``number``, just asked, is beyond the study's size: ``n_trials`` counted
    trials have lower numbers. Two workers that ask for the last place at once both see both
    trials; the lower number keeps it, whatever the order they look in."""
    return len([t for t in _counted(trials) if t.number < number]) >= n_trials


def _shown(url: str) -> str:
    """A storage URL for the log: its password hidden."""
    from sqlalchemy.engine import make_url

    return str(make_url(url).render_as_string(hide_password=True))


# Workaround: Hydra's plugin scan executes every hydra_plugins module again, also one already
# imported, so its classes become new objects: a launcher built on the submitit launcher's base
# class imported before the scan is no instance of the base class the module holds after it
# (which happens depends on the order the scan finds the plugins in; measured on hydra-core 1.3.8;
# tests/test_upstream.py::test_hydras_plugin_scan_executes_imported_plugin_modules_again):
# compared by the base class's name
_SUBMITIT_BASE = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher", "BaseSubmititLauncher")


def _is_submitit(launcher: Any) -> bool:
    """Whether ``launcher`` is one of Hydra's submitit launchers (cnnzoo's subclasses too)."""
    return any((c.__module__, c.__qualname__) == _SUBMITIT_BASE for c in type(launcher).__mro__)


def _return_value(result: Any) -> Any:
    """``JobReturn.return_value``: the job's value, or its exception raised again — without the
    "Error executing job with overrides" line Hydra writes to stderr then (a pruned trial is no
    error; the sweeper logs each outcome in a line of its own)."""
    from hydra.core.utils import JobStatus

    if result.status == JobStatus.COMPLETED:
        return result.return_value
    with contextlib.redirect_stderr(io.StringIO()):
        return result.return_value


class OptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self.conf = SimpleNamespace(**conf)
        if not 0.0 <= self.conf.max_failure_rate <= 1.0:
            raise ValueError(
                f"hydra.sweeper.max_failure_rate={self.conf.max_failure_rate}: between 0 and 1"
            )
        if self.conf.n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_jobs={self.conf.n_jobs}: at least 1")

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

    @property
    def directions(self) -> list[str]:
        direction = self.conf.direction
        return [str(d) for d in direction] if not isinstance(direction, str) else [direction]

    @property
    def objectives(self) -> list[str]:
        names = self.conf.objectives or [self.config.get("optimized_metric")]
        if len(names) != len(self.directions):
            raise ValueError(
                f"hydra.sweeper.objectives names {len(names)} metric(s) ({names}) for "
                f"{len(self.directions)} direction(s) ({self.directions}): one per direction"
            )
        return [str(name) for name in names]

    def _sampler(self, space: SearchSpace, seed_offset: int) -> Any:
        """The sampler of ``hydra.sweeper.sampler``, its seed moved by ``seed_offset``; a
        GridSampler without a ``search_space`` gets the search's grid."""
        import optuna
        from hydra.utils import get_class, instantiate

        node = self.conf.sampler
        if node is None:
            return optuna.samplers.TPESampler(constant_liar=True)
        cfg = (
            OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
        )
        if cfg.get("seed") is not None:
            cfg["seed"] = int(cfg["seed"]) + seed_offset
        if issubclass(get_class(cfg["_target_"]), optuna.samplers.GridSampler):
            if not cfg.get("search_space"):
                cfg["search_space"] = space.grid()
        return instantiate(cfg, _convert_="all")

    def _open(self, sweep_dir: Path, space: SearchSpace) -> Any:
        import optuna
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        # the sampler first: a space it cannot take (a grid over a continuous range) is refused
        # before a study is stored anywhere
        sampler = self._sampler(space, 0)
        url = study_storage(sweep_dir, self.conf.storage)
        self.retry = RetryHeartbeatStaleTrialCallback(
            max_retry=self.conf.max_retry, inherit_intermediate_values=True
        )
        self.storage = open_storage(
            url,
            heartbeat_interval=self.conf.heartbeat_interval,
            grace_period=self.conf.grace_period,
            stale_trial_callback=self._stale,
        )
        study = optuna.create_study(
            study_name=self.conf.study_name,
            storage=self.storage,
            sampler=sampler,
            directions=self.directions,
            load_if_exists=True,
        )
        if [d.name.lower() for d in study.directions] != self.directions:
            from cnnzoo.errors import UserError

            raise UserError(
                f"the study {study.study_name!r} in {url} optimises "
                f"{[d.name.lower() for d in study.directions]}, not {self.directions}: give "
                "another hydra.sweeper.study_name (or hydra.sweep.dir) for another objective"
            )
        study.set_user_attr("metric", self.objectives[0])
        study.set_metric_names(self.objectives)
        return study

    # -- one trial -------------------------------------------------------------------------------

    def _fail_stale(self, study: Any) -> None:
        """Fail (and queue again) the running trials whose worker stopped: no heartbeat for
        ``grace_period`` s, or none ever recorded for that long (an older version's)."""
        import optuna

        optuna.storages.fail_stale_trials(study)  # calls _stale for each trial it failed
        for trial in self._running(study):
            started = trial.datetime_start
            if (
                "worker" not in trial.user_attrs
                and started is not None
                and (time.time() - started.timestamp()) > self.conf.grace_period
            ):
                log.warning("Trial %d was left running by a stopped search: retried", trial.number)
                self._give_up(study, trial.number, "left running by a stopped search")

    def _stale(self, study: Any, trial: Any) -> None:
        """The heartbeat failed ``trial``: say so, and queue it again."""
        log.warning(
            "Trial %d failed: its worker recorded no heartbeat for %d s (stopped or lost); it is "
            "retried",
            trial.number,
            self.conf.grace_period,
        )
        self.retry(study, trial)

    def _trial_id(self, number: int) -> int:
        return int(self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number))

    def _running(self, study: Any) -> list[Any]:
        import optuna

        return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))

    def _give_up(self, study: Any, number: int, reason: str) -> None:
        """Fail a running trial that will not be told (its job was cut off) and queue it again,
        as the heartbeat would."""
        import optuna

        self.heartbeat.remove(number)
        self.storage.set_trial_user_attr(self._trial_id(number), NOTE, reason)
        try:
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            return  # finished meanwhile
        [frozen] = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        self.retry(study, frozen)

    def _study_full(self, study: Any) -> bool:
        import optuna

        trials = study.get_trials(deepcopy=False)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return False  # trials queued to run again (their worker stopped)
        sampler = study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
            if not self._grid_done:
                log.info("Every point of the grid has been tried: the search ends")
            self._grid_done = True
            return True
        return len(_counted(trials)) >= self.conf.n_trials

    def _next_job(self, study: Any, space: SearchSpace, sweep_dir: Path) -> Job | None:
        """Ask the study for the next trial and make it a job; None when the study is full."""
        while not self._stopping:
            self._fail_stale(study)
            if self._grid_done or self._study_full(study):
                return None
            trial = study.ask()
            self.heartbeat.add(trial.number)
            trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
            if self._first_trial is None:
                self._first_trial = trial.number
                self._reseed(study, space, trial.number)
            trials = {t.number: t for t in study.get_trials(deepcopy=False)}
            from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

            history = Retry.retry_history(trials[trial.number])
            if not history and self._surplus(study, trials, trial.number):
                continue
            job = self._job(study, trial, space, sweep_dir, [trials[n] for n in history])
            if job is not None:
                return job
        return None

    def _reseed(self, study: Any, space: SearchSpace, first: int) -> None:
        """This worker's sampler: the seed moved by its first trial's number (0 for a new
        study's first worker), so that a continued study or another worker does not replay the
        first candidates."""
        import optuna

        if first == 0 or isinstance(study.sampler, optuna.samplers.GridSampler):
            return
        study.sampler = self._sampler(space, first)
        seed = OmegaConf.select(self.conf.sampler, "seed") if self.conf.sampler else None
        if seed is not None:
            log.info("Sampler seed %d + %d: this worker's first trial is %d", seed, first, first)

    def _surplus(self, study: Any, trials: dict[int, Any], number: int) -> bool:
        """Whether a new trial is beyond the study's size: another worker asked at the same
        time. The lower trial numbers keep their place; this one is recorded and never run."""
        import optuna

        if not beyond_size(list(trials.values()), number, self.conf.n_trials):
            return False
        self.storage.set_trial_user_attr(self._trial_id(number), SURPLUS, True)
        note = (
            f"not run: the study already had n_trials={self.conf.n_trials} trials (another "
            "worker asked at the same time)"
        )
        self._finish(study, number, optuna.trial.TrialState.FAIL, note)
        log.info("Trial %d is beyond the study's size (another worker took the last place)", number)
        return True

    def _job(
        self,
        study: Any,
        trial: Any,
        space: SearchSpace,
        sweep_dir: Path,
        retried: list[Any],
    ) -> Job | None:
        """The trial's parameters as job overrides; None when it ended before training (told)."""
        import optuna

        overrides = [*space.fixed, *(dim.override(trial) for dim in space.dimensions)]
        if self.custom_space is not None:
            self.custom_space(self.config, trial)
            extra = sorted(set(trial.params) - space.param_names)
            overrides += [f"{name}={override_value(trial.params[name])}" for name in extra]
        job_dir = (sweep_dir / str(trial.number)).resolve()
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("job_dir", str(job_dir))
        note = None
        if retried:
            from cnnzoo.resume import newest_checkpoint

            dirs = [Path(t.user_attrs["job_dir"]) for t in retried if "job_dir" in t.user_attrs]
            found = next((c for c in map(newest_checkpoint, reversed(dirs)) if c), None)
            note = f"retry of trial {retried[-1].number}"
            if found is not None:
                overrides = [*without_key(overrides, "ckpt_path"), f"ckpt_path={found}"]
                note += f", resumed from {found}"
            log.info("Trial %d: %s", trial.number, note)
            trial.set_user_attr(NOTE, note)
        try:
            rejected = self._measure(trial, overrides)
        except Exception as error:  # a candidate the builder refuses is a failed trial
            log.warning("Trial %d: cannot build the network: %s", trial.number, error)
            self._finish(
                study, trial.number, optuna.trial.TrialState.FAIL, f"build failed: {error}"
            )
            self._count(failed=True, note=f"build failed: {error}")
            return None
        if rejected:
            log.info("Trial %d rejected before training: %s", trial.number, rejected)
            self._finish(
                study, trial.number, optuna.trial.TrialState.PRUNED, f"over budget: {rejected}"
            )
            return None
        job = [*overrides, f"{self.trial_key}={trial.number}", f"hydra.sweep.subdir={trial.number}"]
        return Job(trial=trial, overrides=job, job_dir=job_dir)

    def _measure(self, trial: Any, overrides: list[str]) -> str | None:
        """The candidate network's size and cost, when a budget or an objective needs them
        (user attributes ``model/params`` and ``model/flops``); why it is over budget, if it is."""
        budget = self.conf.max_params is not None or self.conf.max_flops is not None
        if not budget and not set(COST_METRICS) & set(self.objectives):
            return None
        from cnnzoo.models.stats import config_cost

        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        params, flops = config_cost(cfg)
        trial.set_user_attr("model/params", params)
        trial.set_user_attr("model/flops", flops)
        if self.conf.max_params is not None and params > self.conf.max_params:
            return f"{params:,} parameters > max_params={self.conf.max_params:,}"
        if self.conf.max_flops is not None and flops > self.conf.max_flops:
            return f"{flops:,} FLOPs > max_flops={self.conf.max_flops:,}"
        return None

    def _finish(
        self,
        study: Any,
        number: int,
        state: Any,
        note: str | None = None,
        values: Any = None,
    ) -> None:
        """Tell the study how trial ``number`` ended; its heartbeat stops."""
        if note is not None:
            self.storage.set_trial_user_attr(self._trial_id(number), NOTE, note)
        try:
            study.tell(number, state=state, values=values)
        except RuntimeError as error:
            # GridSampler stops the study once its grid is exhausted, which Optuna allows only
            # inside study.optimize; the trial has been told all the same
            if "Study.stop" not in str(error):
                raise
            self._grid_done = True
            log.info("Every point of the grid has been tried: the search ends")
        finally:
            self.heartbeat.remove(number)

    def _count(self, *, failed: bool, note: str | None = None) -> None:
        self._told += 1
        if failed:
            self._failed += 1
            self._last_failure = note
        if self._failed and self._failed / self._told > self.conf.max_failure_rate:
            self._stopping = True

    def _tell(self, study: Any, job: Job, result: Any) -> None:
        """Record the job's outcome: ``JobReturn.return_value`` re-raises the job's exception
        (``optuna.TrialPruned`` for a pruned job)."""
        import optuna

        state = optuna.trial.TrialState
        number = job.trial.number
        try:
            value = _return_value(result)
        except optuna.TrialPruned as error:
            log.info("Trial %d pruned: %s", number, error)
            self._finish(study, number, state.PRUNED, f"pruned: {error}")
            self._count(failed=False)
            return
        except Exception as error:
            note = one_line(f"{type(error).__name__}: {error}")
            log.warning("Trial %d failed: %s", number, note)
            self._finish(study, number, state.FAIL, note)
            self._count(failed=True, note=note)
            return
        values, missing = self._values(job, value)
        if missing:
            log.warning("Trial %d: %s: recorded as failed", number, missing)
            self._finish(study, number, state.FAIL, missing)
            self._count(failed=True, note=missing)
            return
        self._finish(study, number, state.COMPLETE, values=values)
        self._count(failed=False)
        scores = ", ".join(f"{n} = {v:.4f}" for n, v in zip(self.objectives, values, strict=True))
        log.info("Trial %d: %s", number, scores)

    def _values(self, job: Job, value: Any) -> tuple[list[float], str | None]:
        """The trial's objective values, or why there are none."""
        if self.conf.objectives is None:
            values = [value]
        else:
            record = read_job_summary(job.job_dir) or {}
            metrics = {**record.get("metrics", {}), **job.trial.user_attrs}
            found = {**record, **metrics}
            values = [found.get(name) for name in self.objectives]
        for name, found_value in zip(self.objectives, values, strict=True):
            if not isinstance(found_value, (int, float)) or not math.isfinite(float(found_value)):
                return [], f"{name} is {found_value}"
        return [float(v) for v in values], None

    # -- the search ------------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        with warnings.catch_warnings():
            # the heartbeat, its retry callback and metric names are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        params = OmegaConf.to_container(OmegaConf.create(self.conf.params), resolve=True)
        space = search_space(params, arguments)
        self.custom_space = None
        if self.conf.custom_search_space:
            from hydra.utils import get_method

            self.custom_space = get_method(self.conf.custom_search_space)
        self.trial_key = TRIAL_KEY if TRIAL_KEY in self.config else f"+{TRIAL_KEY}"
        study = self._open(sweep_dir, space)
        self.study_id = self.storage.get_study_id_from_name(study.study_name)
        self._first_trial: int | None = None
        self._grid_done = self._stopping = False
        self._told = self._failed = 0
        self._last_failure: str | None = None
        self._waited_for: list[int] = []
        if len(self.directions) > 1 and self.conf.pruner is not None:
            log.info("Several objectives: no pruning (Optuna prunes single-objective studies)")
        log.info(
            "Study %s (%s) in %s: %d trials so far, %d in all; %d at a time",
            study.study_name,
            ", ".join(f"{d} {m}" for d, m in zip(self.directions, self.objectives, strict=True)),
            _shown(study_storage(sweep_dir, self.conf.storage)),
            len(_counted(study.get_trials(deepcopy=False))),
            self.conf.n_trials,
            self.conf.n_jobs,
        )
        with Heartbeat(self.storage, self.study_id, self.conf.heartbeat_interval) as heartbeat:
            self.heartbeat = heartbeat
            try:
                if self.conf.n_jobs > 1 and _is_submitit(self.launcher):
                    self._run_slots(study, space, sweep_dir)
                else:
                    if self.conf.n_jobs > 1:
                        log.info(
                            "n_jobs=%d with %s: each batch of %d trials runs as the launcher "
                            "runs a batch (Hydra's basic launcher: one job after another; "
                            "hydra/launcher=local or slurm runs them at once)",
                            self.conf.n_jobs,
                            type(self.launcher).__name__,
                            self.conf.n_jobs,
                        )
                    self._run_batches(study, space, sweep_dir)
            except BaseException:
                for number in heartbeat.running():  # cut off: queued again, resumed then
                    self._give_up(study, number, "interrupted: the search worker stopped")
                raise
        write_results(study, sweep_dir)
        self._check(study, sweep_dir)
        return study

    def _run_batches(self, study: Any, space: SearchSpace, sweep_dir: Path) -> None:
        """K trials asked, launched as one batch, told when the batch has ended."""
        while True:
            batch: list[Job] = []
            while len(batch) < self.conf.n_jobs:
                job = self._next_job(study, space, sweep_dir)
                if job is None:
                    break
                batch.append(job)
            if not batch:
                if self._stopping or not self._wait_for_others(study):
                    return
                continue
            results = self.launcher.launch(
                [job.overrides for job in batch], initial_job_idx=batch[0].trial.number
            )
            for job, result in zip(batch, results, strict=True):
                self._tell(study, job, result)

    def _run_slots(self, study: Any, space: SearchSpace, sweep_dir: Path) -> None:
        """K slots, each launching one job (a submitit job: a process, or a SLURM job) in a
        thread and telling its trial as soon as it ends; the freed slot asks the next trial."""
        done: queue.Queue[tuple[int, Any, BaseException | None]] = queue.Queue()
        running: dict[int, Job] = {}

        def launch(job: Job) -> None:
            try:
                [result] = self.launcher.launch([job.overrides], initial_job_idx=job.trial.number)
                done.put((job.trial.number, result, None))
            except BaseException as error:  # the launcher's failure, raised in the main thread
                done.put((job.trial.number, None, error))

        while True:
            while len(running) < self.conf.n_jobs:
                job = self._next_job(study, space, sweep_dir)
                if job is None:
                    break
                running[job.trial.number] = job
                threading.Thread(target=launch, args=(job,), daemon=True).start()
            if not running:
                if self._stopping or not self._wait_for_others(study):
                    return
                continue
            try:
                number, result, error = done.get(timeout=self.conf.heartbeat_interval)
            except queue.Empty:
                self._fail_stale(study)
                continue
            job = running.pop(number)
            if error is not None:
                raise error
            self._tell(study, job, result)

    def _wait_for_others(self, study: Any) -> bool:
        """With nothing left to ask, wait while other workers' trials run (True: look again),
        to retry any whose worker stops."""
        mine = self.heartbeat.running()
        others = [t.number for t in self._running(study) if t.number not in mine]
        if not others:
            return False
        if others != self._waited_for:
            log.info(
                "The study is full; waiting for trial(s) %s of other workers (retried here if "
                "their worker records no heartbeat for %d s)",
                ", ".join(map(str, others)),
                self.conf.grace_period,
            )
            self._waited_for = others
        time.sleep(min(self.conf.heartbeat_interval, 5))
        return True

    def _check(self, study: Any, sweep_dir: Path) -> None:
        """A search that found nothing, or stopped for its failures, is a failure."""
        from cnnzoo.errors import UserError

        if self._stopping:
            raise UserError(
                f"{self._failed} of the {self._told} trials this search ran failed, more than "
                f"max_failure_rate={self.conf.max_failure_rate}: it stopped (the last: "
                f"{self._last_failure}; every reason is in {sweep_dir}/summary.md)"
            )
        states = [trial.state.name.lower() for trial in _counted(study.get_trials(deepcopy=False))]
        if "complete" not in states:
            counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
            raise UserError(
                f"no trial of the study {study.study_name!r} completed ({len(states)} trials: "
                f"{counts}; the reasons are in {sweep_dir}/summary.md and the study's notes)"
            )
