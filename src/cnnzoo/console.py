"""What the entry points print before Hydra runs: the command line made friendlier, the optional
packages a command needs checked, and third-party messages that say nothing about the run
filtered out — each one by its text and origin, so every other warning still shows."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from hydra.experimental.callback import Callback

from cnnzoo.errors import UserError

__all__ = [
    "LightningLogsThroughHydra",
    "WritableOutputDir",
    "fast_group_listing",
    "lightning_logs_through_root",
    "prepare_command_line",
    "quiet_third_party_messages",
    "quietly",
    "require_extra",
    "torch_grad_mode",
]

# groups that may be switched off entirely: `logger=null` reads naturally, but Hydra refuses
# null for a config group; its own spelling is `~logger`.
# Workaround: Hydra refuses null for a config group (measured on hydra-core 1.3.8;
# tests/test_upstream.py::test_hydra_refuses_null_for_a_config_group)
_OPTIONAL_GROUPS = ("logger", "callbacks")
# a command-line choice -> (module it needs, cnnzoo extra, what needs it)
_EXTRAS = (
    (
        re.compile(r"^hydra/launcher=(slurm|local)$"),
        "hydra_plugins.hydra_submitit_launcher",
        "slurm",
    ),
    (re.compile(r"^hparams_search=.+"), "optuna", "optuna"),
    (re.compile(r"^hydra/sweeper=cnnzoo_optuna$"), "optuna", "optuna"),
)


def require_extra(module: str, extra: str, feature: str) -> None:
    """One message naming the extra to install when an optional package is missing."""
    if importlib.util.find_spec(module) is None or sys.modules.get(module, True) is None:
        raise UserError(
            f"{feature} needs the package '{module}', which is not installed: "
            f"pip install 'cnnzoo[{extra}]' (or 'cnnzoo[all]')"
        )


def prepare_command_line(argv: list[str] | None = None) -> None:
    """Rewrite ``sys.argv`` in place: ``logger=null`` -> ``~logger`` (also ``callbacks``), and
    refuse, in one message, an option whose optional package is not installed. With ``--help``,
    Hydra lists the config groups from one copy of its config repository (``fast_group_listing``).
    """
    args = sys.argv if argv is None else argv
    if {"--help", "-h", "--hydra-help"} & set(args[1:]):
        fast_group_listing()
    for i, arg in enumerate(args[1:], start=1):
        key, _, value = arg.partition("=")
        if key in _OPTIONAL_GROUPS and value in ("null", "none", "[]"):
            args[i] = f"~{key}"
        for pattern, module, extra in _EXTRAS:
            if pattern.match(arg):
                try:
                    require_extra(module, extra, arg)
                except UserError as error:
                    user_error_exit(error)


# Workaround: Hydra's --help copies its config repository for every config group it lists
# (measured on hydra-core 1.3.8; tests/test_upstream.py::
# test_hydras_config_loader_copies_its_repository_for_every_group_question)
def fast_group_listing() -> None:
    """Hydra's ``--help`` asks its config loader for the options of every config group, twice
    over, and each question deep-copies the whole config repository and reloads the primary
    config: ~110 questions for cnnzoo's groups, half of ``--help``'s time. Here one repository
    per (config, overrides) answers them all, through Hydra's private ``ConfigLoaderImpl``; the
    answers are the same (tests/test_startup.py compares them)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.object_type import ObjectType

    if hasattr(ConfigLoaderImpl.get_group_options, "__wrapped__"):
        return
    original = ConfigLoaderImpl.get_group_options

    @functools.wraps(original)
    def get_group_options(
        self: ConfigLoaderImpl,
        group_name: str,
        results_filter: ObjectType | None = ObjectType.CONFIG,
        config_name: str | None = None,
        overrides: list[str] | None = None,
    ) -> list[str]:
        repos = self.__dict__.setdefault("_cnnzoo_repositories", {})
        key = (config_name, tuple(overrides or ()))
        if key not in repos:
            _, repos[key] = self._parse_overrides_and_create_caching_repo(
                config_name, list(overrides or ())
            )
        return list(repos[key].get_group_options(group_name, results_filter))

    ConfigLoaderImpl.get_group_options = get_group_options  # type: ignore[method-assign]


# Workaround: Lightning (and torch, for Lightning) print these, which say nothing about the run
# (measured on lightning 2.6.6, torch 2.14.1; tests/test_upstream.py::
# test_lightnings_messages_that_the_console_filters_are_still_emitted)
# (message regex, module regex) of warnings that describe a library, not the user's run
_IGNORED_WARNINGS = (
    # Lightning calls a torch API that torch deprecated; nothing a user can change
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\..*"),
    # a resumed run continues in its own run dir, whose checkpoints folder is full by design
    (r"Checkpoint directory .* exists and is not empty", r"lightning\..*"),
    # every local run on a machine with SLURM's client (a login node) otherwise: jobs on the
    # cluster go through srun (scripts/slurm/train.sbatch, hydra/launcher=slurm)
    (r"The `srun` command is available on your system but is not used", r"lightning\..*"),
    # DDP: cnnzoo's epoch metrics are torchmetrics states summed over the processes when
    # computed, so every rank logs the same value (sync_dist would only add a collective)
    (r"It is recommended to use `self.log\('(train|val|test)/", r"lightning\..*"),
)
# (logger, message regex) of info lines that say nothing about the run
_IGNORED_LOG_LINES = (
    # adverts for Lightning's cloud products (litlogger, litmodels)
    ("lightning.pytorch.utilities.rank_zero", r"^💡 Tip: "),
    ("lightning.pytorch.utilities.rank_zero", r"^(TPU|HPU) available: "),
    ("lightning.pytorch.utilities.rank_zero", r"^Loading `train_dataloader` to estimate"),
    ("lightning.pytorch.utilities.rank_zero", r"^Trainer already configured with model summary"),
)


class _DropLines(logging.Filter):
    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def quiet_third_party_messages() -> None:
    """Filter the third-party warnings and info lines listed above (and nothing else); a second
    call in the same process adds nothing."""
    for message, module in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    by_logger: dict[str, list[str]] = {}
    for name, pattern in _IGNORED_LOG_LINES:
        by_logger.setdefault(name, []).append(pattern)
    for name, patterns in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines(patterns))


@contextmanager
def quietly(*names: str) -> Iterator[None]:
    """Only warnings and errors from these loggers while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def user_error_exit(error: UserError) -> None:
    """Print one error line and exit 1, as Hydra does for its own errors."""
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(1)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A ``UserError`` raised before Hydra runs is printed as Hydra prints its own: one line."""
    try:
        yield
    except UserError as error:
        user_error_exit(error)


# Workaround: Hydra turns an exception raised in a callback into a warning and goes on (measured
# on hydra-core 1.3.8; tests/test_upstream.py::
# test_hydra_turns_an_exception_in_a_callback_into_a_warning): the line is printed here and the
# process exits 1, as Hydra does for its own errors
class WritableOutputDir(Callback):
    """Hydra callback: the run's (or sweep's) folder is made before Hydra makes it, so that one
    that cannot be written (a read-only ``CNNZOO_ROOT``) is one line naming it and the key that
    moves it, not Hydra's page of chained tracebacks."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _writable_folder(Path(str(config.hydra.run.dir)), "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _writable_folder(Path(str(config.hydra.sweep.dir)), "hydra.sweep.dir")


class LightningLogsThroughHydra(Callback):
    """Hydra callback: Lightning's messages are printed once, in the job's log format, and kept in
    its ``train.log``."""

    # Workaround: the ``lightning`` package gives its logger a console handler of its own on
    # import (``INFO: <message>``); imported once Hydra has set up logging, as the entry points
    # import it, its subpackages also pass every message on to Hydra's handlers: each line twice
    # on the console (measured on lightning 2.6.6; tests/test_upstream.py::
    # test_lightning_adds_its_own_console_handler_on_import)
    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        lightning_logs_through_root()


def lightning_logs_through_root() -> None:
    """Remove the console handler the ``lightning`` package adds to its logger, when the root
    logger has handlers of its own (the job's) that Lightning's messages reach."""
    if not logging.getLogger().handlers:
        return
    import lightning

    own = getattr(lightning, "_console", None)
    if isinstance(own, logging.Handler):
        logging.getLogger("lightning").removeHandler(own)


def _writable_folder(folder: Path, key: str) -> None:
    from cnnzoo.records import write_failure

    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, os.strerror(13), str(folder))
    except OSError as error:
        user_error_exit(
            UserError(
                f"cannot write the output folder {folder}: {write_failure(error)}; choose a "
                f"writable one with CNNZOO_ROOT=<folder>, paths.log_dir=<folder> or "
                f"{key}=<folder>"
            )
        )


P = ParamSpec("P")
R = TypeVar("R")


def torch_grad_mode(mode: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``@torch.<mode>()`` (``inference_mode``, ``no_grad``) with torch imported when the
    function runs, not when its module is imported."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            import torch

            with getattr(torch, mode)():
                return function(*args, **kwargs)

        return run

    return decorate
