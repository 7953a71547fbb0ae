"""Several search processes ("workers") on one Optuna study in PostgreSQL: together they run the
study's size exactly, with distinct candidates, and a worker killed with kill -9 loses nothing —
its trial is failed by the heartbeat and retried by the other worker from the killed job's
checkpoint.

The tests marked `services` need a PostgreSQL server: `export CNNZOO_TEST_POSTGRES_URL=$(sudo
scripts/services/postgres.sh)`; without it they are skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from cli import QUIET, start, wait_for

from hydra_plugins.cnnzoo_optuna_sweeper.sweeper import beyond_size

optuna.logging.set_verbosity(optuna.logging.WARNING)

# a trial: one short LeNet epoch per job (test=false: the search optimises val/acc_best)
TRIAL = ("debug=limit", "test=false", *QUIET)
# a stopped worker's trial is failed 3 s after its last heartbeat
HEARTBEAT = ("hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3")


@pytest.fixture
def study_db() -> Iterator[tuple[str, str]]:
    """(storage URL, a new study's name) in the test database; the study is deleted after."""
    url = os.environ.get("CNNZOO_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "CNNZOO_TEST_POSTGRES_URL is not set: start PostgreSQL with "
            "`sudo scripts/services/postgres.sh` and export the URL it prints"
        )
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield url, name
    try:
        optuna.delete_study(study_name=name, storage=url)
    except KeyError:  # never created
        pass


def worker(sweep: Path, url: str, name: str, *args: str) -> subprocess.Popen[str]:
    return start(
        "train.py",
        "-m",
        "hparams_search=mnist_optuna",
        f"hydra.sweep.dir={sweep}",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.study_name={name}",
        *TRIAL,
        *args,
    )


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-5000:]
    return output


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_two_workers_asking_for_the_last_place_at_once_leave_it_to_the_lower_number() -> None:
    """The race at the end of a study: the study's size is 3, two trials are done and two
    workers ask at once. Both see both new trials; only the lower number runs."""
    study = optuna.create_study()
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    first, second = study.ask(), study.ask()  # two workers, before either looks
    trials = study.get_trials(deepcopy=False)
    assert not beyond_size(trials, first.number, n_trials=3)
    assert beyond_size(trials, second.number, n_trials=3)
    # the second is recorded as surplus and never runs; the first is cut off (its worker
    # stopped) and queued again: the study's size counts neither, only the retry
    second.set_user_attr("surplus", True)
    study.tell(second, state=optuna.trial.TrialState.FAIL)
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
    retry(study, study.get_trials(deepcopy=False)[first.number])
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials][2:] == ["FAIL", "FAIL", "WAITING"]
    assert beyond_size(trials, len(trials), n_trials=3)
    assert not beyond_size(trials, len(trials), n_trials=4)


@pytest.mark.services
def test_two_workers_run_the_study_once_with_distinct_candidates(
    tmp_path: Path, study_db: tuple[str, str]
) -> None:
    url, name = study_db
    sweep = tmp_path / "sweep"
    first, second = (worker(sweep, url, name, "hydra.sweeper.n_trials=4",
                            "trainer.max_epochs=1") for _ in range(2))  # fmt: skip
    outputs = [finish(first), finish(second)]
    trials = optuna.load_study(study_name=name, storage=url).trials
    run = [t for t in trials if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in run] == ["COMPLETE"] * 4
    # each candidate once: no replayed parameters across the workers
    assert len({json.dumps(t.params, sort_keys=True) for t in run}) == 4
    # both workers took part, and every trial trained once, in its own job dir
    assert {t.user_attrs["worker"]["pid"] for t in run} == {first.pid, second.pid}
    assert sorted(p.parent.name for p in sweep.glob("*/summary.json")) == sorted(
        str(t.number) for t in run
    )
    assert all("failed" not in output.lower() for output in outputs)


@pytest.mark.services
def test_a_killed_workers_trial_is_retried_by_the_other_from_its_checkpoint(
    tmp_path: Path, study_db: tuple[str, str]
) -> None:
    url, name = study_db
    sweep = tmp_path / "sweep"
    args = ("hydra.sweeper.n_trials=3", "trainer.max_epochs=3", *HEARTBEAT)
    doomed = worker(sweep, url, name, *args)

    def doomed_trial() -> optuna.trial.FrozenTrial | None:
        try:
            trials = optuna.load_study(study_name=name, storage=url).trials
        except KeyError:
            return None
        mine = [t for t in trials if t.user_attrs.get("worker", {}).get("pid") == doomed.pid]
        return mine[0] if mine else None

    wait_for(doomed_trial, timeout=300)
    other = worker(sweep, url, name, *args)
    killed = doomed_trial()
    assert killed is not None
    checkpoint = sweep / str(killed.number) / "checkpoints" / "last.ckpt"
    wait_for(checkpoint.is_file, timeout=300)  # an epoch done: something to resume
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=60)
    output = finish(other)

    trials = {t.number: t for t in optuna.load_study(study_name=name, storage=url).trials}
    assert trials[killed.number].state.name == "FAIL"
    [retry] = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state.name == "COMPLETE"
    assert retry.params == killed.params
    assert f"Trial {killed.number} failed: its worker recorded no heartbeat" in output
    # the retry resumed the killed job from its checkpoint, in its own job dir
    record = json.loads((sweep / str(retry.number) / "summary.json").read_text())
    assert record["status"] == "completed"
    assert Path(record["resumed_from"]) == checkpoint
    assert f"resumed from {checkpoint}" in retry.user_attrs["note"]
    # the study's size: the killed trial counts once, through its retry
    counted = [t for t in trials.values() if t.number != killed.number]
    assert len(counted) == 3 and all(t.state.name == "COMPLETE" for t in counted)
