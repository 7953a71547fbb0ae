"""The upstream behaviours cnnzoo works around, each asserted as it is today.

Every ``# Workaround:`` comment in ``src/`` names one test here, with the version the behaviour
was measured on (lightning 2.6.6, hydra-core 1.3.8, torchmetrics 1.9.0, wandb 0.31.0,
fsspec 2026.9.0, torch 2.14.1, pillow 13.0.0). A test here **fails the day upstream changes**:
its docstring says what to do then — usually drop the workaround (and the test); for a private
API cnnzoo relies on, adapt cnnzoo to its new shape. Each calls the upstream code as narrowly
as it can, so that the file runs in seconds.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from hydra.experimental.callback import Callback
from lightning.pytorch.demos.boring_classes import BoringModel


def _trainer(root: Path, **kwargs: Any) -> L.Trainer:
    kwargs = {
        "default_root_dir": root,
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **kwargs,
    }
    return L.Trainer(**kwargs)


# --- Lightning ----------------------------------------------------------------------------------


@pytest.fixture
def system_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The system temp dir moved under ``tmp_path``; yields the temporary files made there."""
    folder = tmp_path / "system-temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    made: list[Path] = []
    mkstemp = tempfile.mkstemp

    def spy(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = mkstemp(*args, **kwargs)
        made.append(Path(name))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    yield made


def test_lightnings_checkpoint_save_writes_its_temporary_file_in_the_system_temp_dir(
    tmp_path: Path, system_temp: list[Path]
) -> None:
    """``TorchCheckpointIO`` saves through an fsspec transaction, whose temporary file is made in
    the system temp dir and then moved: across filesystems the move is a copy, which a kill
    truncates. When this fails (the temporary file sits beside the checkpoint), and
    ``test_lightnings_checkpoint_save_swallows_a_permission_error`` fails too, drop
    ``cnnzoo.checkpoint.AtomicCheckpointIO`` for Lightning's own checkpoint IO."""
    from lightning.fabric.plugins import TorchCheckpointIO

    destination = tmp_path / "run" / "checkpoints" / "last.ckpt"
    TorchCheckpointIO().save_checkpoint({"step": 1}, destination)
    assert torch.load(destination, weights_only=True) == {"step": 1}
    assert system_temp and {path.parent for path in system_temp} == {tmp_path / "system-temp"}


def test_lightnings_checkpoint_save_swallows_a_permission_error(
    tmp_path: Path, system_temp: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save the filesystem refuses (a read-only folder; simulated, since root may write
    anywhere) returns as if it had saved, and no checkpoint exists: a run would go on training
    unsaved. When this fails (the error reaches the caller), see the test above:
    ``cnnzoo.checkpoint.AtomicCheckpointIO`` may go once both fail."""
    from lightning.fabric.plugins import TorchCheckpointIO

    def refuse(source: str, destination: str, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", destination)

    monkeypatch.setattr(shutil, "move", refuse)
    destination = tmp_path / "read-only" / "last.ckpt"
    TorchCheckpointIO().save_checkpoint({"step": 1}, destination)  # no error
    assert not destination.exists()


def test_lightning_resumes_from_an_on_exception_checkpoint_when_ckpt_path_is_none(
    tmp_path: Path,
) -> None:
    """With ``OnExceptionCheckpoint`` among the callbacks, ``fit(ckpt_path=None)`` resumes from
    the file it names when one exists: a rerun in the same run dir silently continues the
    interrupted run. When this fails (None starts afresh), ``cnnzoo.callbacks.
    InterruptCheckpoint`` may give way to ``OnExceptionCheckpoint`` — keep saving only on
    Ctrl-C and SIGTERM, not on a crash."""
    from lightning.pytorch.callbacks import OnExceptionCheckpoint

    saved = tmp_path / "interrupted"
    first = _trainer(tmp_path, max_steps=1, callbacks=[OnExceptionCheckpoint(saved)])
    first.fit(BoringModel())
    first.save_checkpoint(saved / "on_exception.ckpt")
    rerun = _trainer(tmp_path, max_steps=2, callbacks=[OnExceptionCheckpoint(saved)])
    rerun.fit(BoringModel(), ckpt_path=None)
    assert rerun.ckpt_path == str(saved / "on_exception.ckpt")


def test_lightning_formats_each_callbacks_state_key_at_every_hook_call() -> None:
    """The trainer names every hook call of every callback in its profiler with the callback's
    ``state_key``, which ``ModelCheckpoint`` formats anew each time (a ``repr`` of five
    settings): six times a batch per checkpoint callback. When this fails (formatted once, or
    not at every call), drop ``cnnzoo.callbacks.ModelCheckpoint.state_key``."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.trainer.call import _call_callback_hooks

    callback = ModelCheckpoint(monitor="val/acc")
    formatted = []
    generate = callback._generate_state_key

    def spy(**settings: Any) -> str:
        formatted.append(settings)
        return generate(**settings)

    callback._generate_state_key = spy  # type: ignore[method-assign]
    trainer = SimpleNamespace(
        lightning_module=None, callbacks=[callback], profiler=PassThroughProfiler()
    )
    for batch_idx in range(3):
        _call_callback_hooks(trainer, "on_train_batch_start", None, batch_idx)
    assert len(formatted) == 3


def test_lightnings_model_checkpoint_reads_the_trainer_at_every_batch_when_it_saves_by_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``ModelCheckpoint`` that saves once an epoch still asks, at every training batch,
    whether the trainer's state allows a save, before finding that the batch is not one to
    save at. When this fails (it returns first), drop ``cnnzoo.callbacks.ModelCheckpoint.
    on_train_batch_end``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    callback = ModelCheckpoint(filename="last")
    assert callback._every_n_train_steps == 0 and callback._train_time_interval is None
    asked = []
    monkeypatch.setattr(
        callback, "_should_skip_saving_checkpoint", lambda trainer: asked.append(trainer) or True
    )
    trainer = SimpleNamespace(global_step=1)
    module = SimpleNamespace(automatic_optimization=True)
    callback.on_train_batch_end(trainer, module, None, None, 0)  # type: ignore[arg-type]
    assert asked == [trainer]


def test_lightnings_rich_progress_bar_reads_the_metrics_at_every_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``RichProgressBar`` moves the bar and reads the metrics at every training batch, however
    rarely it is drawn (``refresh_rate`` times a second). When this fails, drop
    ``cnnzoo.callbacks.ProgressBar.on_train_batch_end``."""
    from lightning.pytorch.callbacks import RichProgressBar

    bar = RichProgressBar(refresh_rate=5)
    calls: list[str] = []
    monkeypatch.setattr(bar, "_update", lambda *args, **kwargs: calls.append("move"))
    monkeypatch.setattr(bar, "_update_metrics", lambda *args, **kwargs: calls.append("metrics"))
    monkeypatch.setattr(bar, "refresh", lambda *args, **kwargs: None)
    bar.train_progress_bar_id = 0  # type: ignore[assignment]  # a rich TaskID
    for batch_idx in range(3):
        bar.on_train_batch_end(None, None, None, None, batch_idx)  # type: ignore[arg-type]
    assert calls.count("metrics") == 3 and calls.count("move") == 3


def test_lightnings_csv_logger_deletes_the_metrics_csv_it_finds(tmp_path: Path) -> None:
    """A ``CSVLogger`` given an existing version deletes that version's ``metrics.csv``: a
    resumed run would lose its earlier rows. When this fails (it appends), drop
    ``cnnzoo.trackers._set_csv_aside`` and ``_write_back``: only the rows past the resumed
    checkpoint's step then need dropping."""
    from lightning.pytorch.loggers import CSVLogger

    metrics = tmp_path / "csv" / "version_0" / "metrics.csv"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("epoch,step,val/acc\n0,9,0.5\n")
    logger = CSVLogger(tmp_path, name="csv", version=0)
    with pytest.warns(UserWarning, match="will be deleted"):
        logger.experiment  # noqa: B018  # the writer, made on first use
    assert not metrics.exists()


def test_lightnings_ddp_observer_sigkills_the_process_that_launched_a_failed_rank() -> None:
    """When a DDP rank that Lightning started fails, its observer thread SIGKILLs the process
    that launched the ranks — in a multirun, the whole sweep. When this fails (the launching
    process gets the error instead), ``cnnzoo.launch.run_job_in_child`` may go: DDP jobs of a
    sweep can run in the sweep's process again."""
    from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    launcher = subprocess.Popen(["sleep", "60"])  # stands for the sweep's process
    rank = subprocess.Popen(["false"])
    rank.wait()
    try:
        _ChildProcessObserver(main_pid=launcher.pid, child_processes=[rank])._run()
        assert launcher.wait(timeout=30) == -signal.SIGKILL
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_lightning_ends_a_fit_interrupted_by_ctrl_c_with_exit_status_1(tmp_path: Path) -> None:
    """Lightning handles Ctrl-C in ``fit`` and ends it with ``sys.exit(1)``, the
    ``KeyboardInterrupt`` only as the exit's context. When this fails (the KeyboardInterrupt
    propagates), ``cnnzoo.records.outcome_of`` no longer needs to look at ``__context__``."""

    class Interrupted(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            raise KeyboardInterrupt

    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as ended:
            _trainer(tmp_path, max_steps=1, enable_checkpointing=False).fit(Interrupted())
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C from then on
    assert ended.value.code == 1
    assert isinstance(ended.value.__context__, KeyboardInterrupt)


def test_lightnings_learning_rate_monitor_refuses_a_trainer_without_loggers(
    tmp_path: Path,
) -> None:
    """``LearningRateMonitor`` raises at the start of training when the trainer has no logger.
    When this fails, ``cnnzoo.trackers.instantiate_callbacks`` may keep it (``has_logger``)."""
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    trainer = _trainer(tmp_path, enable_checkpointing=False)
    with pytest.raises(MisconfigurationException, match="no logger"):
        LearningRateMonitor().on_train_start(trainer, BoringModel())


@pytest.fixture
def open_wandb_run(monkeypatch: pytest.MonkeyPatch) -> object:
    """``wandb.run`` as if a run were open in this process (none is started)."""
    import wandb

    run = object()
    monkeypatch.setattr(wandb, "run", run)
    return run


def test_lightnings_offline_wandb_logger_sets_wandb_mode_dryrun(
    tmp_path: Path, open_wandb_run: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``WandbLogger(offline=True)`` sets ``WANDB_MODE=dryrun``, W&B's old name for offline,
    for the rest of the process. When this fails (it sets ``offline``), drop ``"dryrun"`` from
    ``cnnzoo.trackers._wandb_node``'s offline modes."""
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.warns(UserWarning, match="already in progress"):
        WandbLogger(offline=True, save_dir=tmp_path).experiment  # noqa: B018
    assert os.environ["WANDB_MODE"] == "dryrun"


def test_lightnings_wandb_logger_continues_a_wandb_run_left_open(
    tmp_path: Path, open_wandb_run: object
) -> None:
    """A new ``WandbLogger`` attaches to a W&B run still open in the process (with a warning)
    rather than starting its own: the second job of a multirun would log into the first one's
    run. When this fails, ``cnnzoo.trackers.finish_wandb_run`` may go."""
    from lightning.pytorch.loggers import WandbLogger

    with pytest.warns(UserWarning, match="already in progress"):
        assert WandbLogger(save_dir=tmp_path).experiment is open_wandb_run


def test_lightnings_wandb_logger_refuses_to_log_checkpoints_offline(tmp_path: Path) -> None:
    """``WandbLogger(offline=True, log_model=True)`` raises: its checkpoint upload needs a
    server. When this fails, ``logger.wandb.log_model`` may be passed to the logger again
    instead of being taken out by ``cnnzoo.trackers._wandb_node`` for the ``Dashboard``
    callback's own upload."""
    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException, match="offline mode"):
        WandbLogger(offline=True, log_model=True, save_dir=tmp_path)


def test_lightnings_wandb_logger_puts_every_metric_on_the_global_step_through_a_glob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``WandbLogger`` defines every metric's x axis at once, ``define_metric("*",
    step_metric="trainer/global_step")``. When this fails (another axis, or named metrics),
    revisit ``cnnzoo.callbacks.dashboard.STEP_METRIC`` and the explicit axis of
    ``train/loss_step``."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger
    from wandb.wandb_run import Run

    class Recorder(Run):
        def __init__(self) -> None:
            self.axes: list[tuple[str, str | None]] = []

        def define_metric(self, name: str, **kwargs: Any) -> None:  # type: ignore[override]
            self.axes.append((name, kwargs.get("step_metric")))

    run = Recorder()
    monkeypatch.setattr(wandb, "run", None)
    monkeypatch.setattr(wandb, "init", lambda **kwargs: run)
    WandbLogger(offline=True, save_dir=tmp_path).experiment  # noqa: B018
    assert ("*", "trainer/global_step") in run.axes


def test_lightning_adds_its_own_console_handler_on_import() -> None:
    """The ``lightning`` package's logger has a console handler of its own (``lightning._console``,
    ``INFO: <message>``) whatever the root logger has. When this fails (no such handler),
    drop ``cnnzoo.console.LightningLogsThroughHydra``."""
    import logging

    import lightning

    handler = lightning._console  # type: ignore[attr-defined]
    assert handler in logging.getLogger("lightning").handlers
    assert handler.formatter is not None and handler.formatter._fmt == "%(levelname)s: %(message)s"


def test_lightnings_messages_that_the_console_filters_are_still_emitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every warning and info line ``cnnzoo.console`` filters out is still one that a short
    ``fit`` emits — on a machine with SLURM's client, in a process group as a DDP rank is. When
    this fails, delete the filter entry that matched nothing (the message it names is gone)."""
    import logging

    import torch.distributed as dist
    from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary

    from cnnzoo import console

    class EstimatesSteps(BoringModel):
        def configure_optimizers(self) -> Any:
            self.trainer.estimated_stepping_batches  # noqa: B018  # as a step schedule does
            return super().configure_optimizers()

        def on_train_epoch_end(self) -> None:
            self.log("train/acc", torch.tensor(1.0))  # an epoch metric, as cnnzoo's

    srun = tmp_path / "bin" / "srun"  # a login node's
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{os.environ['PATH']}")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/group", rank=0, world_size=1)

    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    names = {name for name, _ in console._IGNORED_LOG_LINES}
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last.ckpt").write_bytes(b"")  # a resumed run's folder is not empty
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = _trainer(
                tmp_path,
                max_epochs=1,
                limit_train_batches=1,
                limit_val_batches=0,
                enable_model_summary=True,
                callbacks=[RichModelSummary(), ModelCheckpoint(dirpath=checkpoints)],
            )
            trainer.fit(EstimatesSteps())
    finally:
        dist.destroy_process_group()
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    for message, _module in console._IGNORED_WARNINGS:
        assert any(re.match(message, str(w.message), re.I) for w in caught), message
    for name, pattern in console._IGNORED_LOG_LINES:
        said = [line.getMessage() for line in lines if line.name == name]
        assert any(re.search(pattern, line) for line in said), pattern


def test_lightnings_slurm_requeue_saves_inside_its_signal_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a SLURM job, Lightning's SIGUSR1 handler saves ``hpc_ckpt_1.ckpt`` and requeues
    within the handler, in the middle of whatever the rank was doing (with DDP: collectives at
    different points on each rank). When this fails (the save is deferred to a batch boundary),
    ``cnnzoo.requeue.cluster_plugins`` may leave Lightning's auto-requeue on."""
    scontrol = tmp_path / "bin" / "scontrol"
    scontrol.parent.mkdir()
    scontrol.write_text("#!/bin/sh\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{scontrol.parent}:{os.environ['PATH']}")
    for name, value in {
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "train",
        "SLURM_JOB_ID": "7",
    }.items():
        monkeypatch.setenv(name, value)
    seen: list[bool] = []

    class SignalMidStep(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if batch_idx == 1:
                os.kill(os.getpid(), signal.SIGUSR1)
                seen.append((tmp_path / "hpc_ckpt_1.ckpt").is_file())  # still in the step
            return super().training_step(batch, batch_idx)

    previous = signal.getsignal(signal.SIGUSR1)
    try:
        trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=0)
        trainer.fit(SignalMidStep())
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert seen == [True]


@pytest.mark.parametrize(
    ("devices", "num_nodes"), [(1, 1), (2, 1), ("2", 1), ("auto", 1), (1, 2), ("1", 2)]
)
def test_lightning_counts_a_trainers_processes_as_launch_does(
    tmp_path: Path, devices: int | str, num_nodes: int
) -> None:
    """``cnnzoo.launch`` decides from the trainer's config whether a multirun job starts
    processes of its own, reading ``devices`` as Lightning does (on CPUs here). When this
    fails, bring ``cnnzoo.launch._device_count`` in line with Lightning's reading."""
    from omegaconf import OmegaConf

    from cnnzoo.launch import _device_count

    config = {"accelerator": "cpu", "devices": devices, "num_nodes": num_nodes}
    trainer = _trainer(tmp_path, enable_checkpointing=False, **config)
    assert _device_count(OmegaConf.create(config)) * num_nodes == trainer.world_size


# --- torchmetrics -------------------------------------------------------------------------------


def test_torchmetrics_mean_metric_syncs_at_each_update_or_drops_its_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``MeanMetric`` checks every update for NaNs by reading a tensor back to the host (a
    device sync per step); with the check off (``nan_strategy="disable"``) it ignores
    ``weight=``, so a loss averaged over batches of different sizes comes out wrong. When this
    fails, ``cnnzoo.module.EpochStats`` may take its loss from ``MeanMetric`` — if
    ``python -m benchmarks`` finds it no slower (benchmarks/RESULTS.md)."""
    from torchmetrics import MeanMetric

    reads = []
    to_bool = torch.Tensor.__bool__

    def spy(tensor: torch.Tensor) -> bool:
        reads.append(tensor)
        return to_bool(tensor)

    monkeypatch.setattr(torch.Tensor, "__bool__", spy)
    MeanMetric().update(torch.tensor([1.0, 2.0]))
    assert reads  # the NaN check read a value back
    reads.clear()
    unchecked = MeanMetric(nan_strategy="disable")
    unchecked.update(torch.tensor(1.0), weight=3)
    unchecked.update(torch.tensor(0.0), weight=1)
    assert not reads
    assert float(unchecked.compute()) == 0.5  # weighted, it would be 0.75


# --- Hydra --------------------------------------------------------------------------------------


def test_hydras_command_line_parser_still_splits_flags_from_overrides() -> None:
    """``cnnzoo.resume`` reads a command line with Hydra's own parser,
    ``hydra._internal.utils.get_args_parser`` (private: Hydra has no public one). When this
    fails, adapt ``cnnzoo.resume._parse`` to the parser's new place or shape."""
    from cnnzoo.resume import split_command_line

    flags, overrides = split_command_line(["-m", "--config-dir", "my", "a=1", "+b=[1,2]"])
    assert flags == ["-m", "--config-dir", "my"] and overrides == ["a=1", "+b=[1,2]"]


def test_hydra_refuses_null_for_a_config_group() -> None:
    """``logger=null`` is refused (a config group's value must be a name); Hydra's own spelling
    for no logger is ``~logger``. When this fails, ``cnnzoo.console.prepare_command_line`` need
    not rewrite ``logger=null`` (and ``callbacks=null``)."""
    from conftest import compose_config

    with pytest.raises(ValueError, match="Config group override must be a string or a list"):
        compose_config("logger=null")


class RaiseAtRunStart(Callback):
    """A Hydra callback that fails at the start of a run."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/read-only/logs")


def test_hydra_turns_an_exception_in_a_callback_into_a_warning() -> None:
    """An exception raised in a callback's hook is a warning, and the run goes on. When this
    fails (it stops the run), ``cnnzoo.console.WritableOutputDir`` may raise its ``UserError``
    instead of printing it and exiting."""
    from hydra._internal.callbacks import Callbacks
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {"hydra": {"callbacks": {"fails": {"_target_": f"{__name__}.RaiseAtRunStart"}}}}
    )
    with pytest.warns(UserWarning, match="RaiseAtRunStart.on_run_start raised OSError"):
        Callbacks(config).on_run_start(config=config, config_name="app")


def test_hydras_plugin_scan_executes_imported_plugin_modules_again() -> None:
    """Hydra's plugin scan runs every ``hydra_plugins`` module's code again, also one already
    imported: its classes are new objects, and a class built on the old ones is no subclass of
    the new. When this fails (the scan reuses an imported module), the sweeper's
    ``_is_submitit`` may use ``isinstance`` again."""
    scan = (
        "import hydra_plugins\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra_plugins.hydra_submitit_launcher import submitit_launcher\n"
        "before = submitit_launcher.BaseSubmititLauncher\n"
        "Plugins._scan_all_plugins([hydra_plugins])\n"
        "print(submitit_launcher.BaseSubmititLauncher is before)\n"
    )
    shown = subprocess.run([sys.executable, "-c", scan], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["False"]


def test_hydras_config_loader_copies_its_repository_for_every_group_question(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hydra's ``--help`` lists the config groups through ``ConfigLoaderImpl.get_group_options``
    (private), and each call deep-copies the config repository (a ``CachingConfigRepository``)
    and reloads the primary config. When this fails (one copy serves every question, or the
    method moved), drop ``cnnzoo.console.fast_group_listing`` (or adapt it to the new shape)."""
    from hydra import initialize_config_module
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.config_repository import CachingConfigRepository
    from hydra.core.global_hydra import GlobalHydra

    from cnnzoo.config import CONFIG_MODULE

    # Hydra's own method, also if cnnzoo's replaced it in this process
    original = getattr(ConfigLoaderImpl.get_group_options, "__wrapped__", None)
    if original is not None:
        monkeypatch.setattr(ConfigLoaderImpl, "get_group_options", original)
    copies = []
    init = CachingConfigRepository.__init__

    def spy(self: CachingConfigRepository, delegate: Any) -> None:
        copies.append(delegate)
        init(self, delegate)

    monkeypatch.setattr(CachingConfigRepository, "__init__", spy)
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        assert isinstance(loader, ConfigLoaderImpl)
        for group in ("model", "data", "model", "data"):
            loader.get_group_options(group)
    assert len(copies) == 4


class RecordMultirunEnd(Callback):
    """A Hydra callback that notes whether the multirun's end was announced."""

    ended: list[str] = []

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self.ended.append(str(config.hydra.sweep.dir))


def _multirun(tmp_path: Path, sweeper: str, *overrides: str) -> Any:
    """Hydra's multirun of a task that fails for ``x=1``, in this process, with a config that
    names ``sweeper``, no logging set up and no change of working directory (through Hydra's
    internal entry that ``hydra.main`` calls: should it move, run the same app by ``hydra.main``
    in a subprocess)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "app.yaml").write_text(
        "defaults:\n"
        f"  - override hydra/sweeper: {sweeper}\n"
        "  - override hydra/job_logging: none\n"
        "  - override hydra/hydra_logging: none\n"
        "x: 0\n"
        "hydra:\n"
        f"  sweep: {{dir: {tmp_path / 'sweep'}}}\n"
        "  job: {chdir: false}\n"
        f"  callbacks: {{record: {{_target_: {__name__}.RecordMultirunEnd}}}}\n"
    )

    def task(cfg: Any) -> int:
        if cfg.x == 1:
            raise RuntimeError("job x=1 failed")
        return int(cfg.x)

    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2("app", create_config_search_path(str(tmp_path)))
    try:
        return hydra.multirun("app", task, list(overrides), with_log_configuration=False)
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # type: ignore[assignment]


def test_hydras_basic_sweeper_never_ends_a_multirun_whose_job_failed(tmp_path: Path) -> None:
    """Hydra's basic sweeper raises the first failed job's error once its batch has run, and
    Hydra then never calls the callbacks' ``on_multirun_end``. When this fails (the multirun's
    end is announced), ``cnnzoo.report.ReportOnSweepEnd.on_job_end`` may go, and
    ``BasicSweeper.sweep``'s ``except`` in ``hydra_plugins/cnnzoo_basic_sweeper`` need only
    handle a stopped sweep."""
    RecordMultirunEnd.ended.clear()
    with pytest.raises(RuntimeError, match="job x=1 failed"):
        _multirun(tmp_path, "basic", "x=1,2")
    assert (tmp_path / "sweep" / "1").is_dir()  # the other job ran
    assert RecordMultirunEnd.ended == []
    _multirun(tmp_path / "fine", "basic", "x=2,3")
    assert RecordMultirunEnd.ended == [str(tmp_path / "fine" / "sweep")]


def test_hydras_private_basic_sweeper_still_fits_cnnzoos(tmp_path: Path) -> None:
    """``hydra_plugins.cnnzoo_basic_sweeper`` extends ``hydra._internal.core_plugins.
    basic_sweeper.BasicSweeper`` (private: Hydra has no public sweeper with its job splitting),
    reading its ``overrides``, ``batch_index`` and ``config`` to write the sweep's plan. When
    this fails, adapt the plugin to the class's new shape."""
    import json

    _multirun(tmp_path, "cnnzoo_basic", "x=2,3", "+y=a,b")
    plan = json.loads((tmp_path / "sweep" / "jobs.json").read_text())
    assert sorted(" ".join(job) for job in plan.values()) == [
        "x=2 +y=a",
        "x=2 +y=b",
        "x=3 +y=a",
        "x=3 +y=b",
    ]


# --- torch and PIL --------------------------------------------------------------------------------


class FullDisk(io.FileIO):
    """A file on a disk that is full after 1 kB."""

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > 1024:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_torch_save_on_a_full_disk_raises_a_runtime_error(tmp_path: Path) -> None:
    """``torch.save`` turns the writer's ``OSError`` (ENOSPC) into a ``RuntimeError`` of its zip
    writer, the ``OSError`` only its context. When this fails (it raises the ``OSError``),
    ``cnnzoo.checkpoint.AtomicCheckpointIO.save_checkpoint`` may catch ``OSError`` alone."""
    with pytest.raises(RuntimeError) as raised, FullDisk(tmp_path / "x.tmp", "wb") as f:
        torch.save({"weights": torch.zeros(10_000)}, f)
    assert isinstance(raised.value.__context__, OSError)
    assert raised.value.__context__.errno == errno.ENOSPC


def test_pil_only_warns_of_an_image_under_twice_its_pixel_limit(tmp_path: Path) -> None:
    """PIL refuses an image over twice ``Image.MAX_IMAGE_PIXELS`` (``DecompressionBombError``)
    but only warns of one over the limit, and then decodes it (gigabytes). When this fails (it
    refuses both), ``cnnzoo.data.image_files._open_header`` need not check the size itself."""
    from dataset_files import write_png_bomb
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    side = int((1.5 * limit) ** 0.5)
    with (
        pytest.warns(Image.DecompressionBombWarning),
        Image.open(write_png_bomb(tmp_path / "over.png", side)) as image,
    ):
        assert image.size == (side, side)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(write_png_bomb(tmp_path / "twice.png", int((2.1 * limit) ** 0.5)))
