"""Shared fixtures: configs composed in-process, runs trained in-process, one shared short run.

Tests compose configs and call the entry points' functions in the test process (as
lightning-hydra-template does); ``tests/cli.py`` runs a command in a subprocess for the tests
whose behaviour is the process itself (exit codes, signals, sweeps, DDP, the installed wheel).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# the image-folder header cache of the tests stays out of the user's ~/.cache
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cnnzoo-test-cache-")
torch.set_num_threads(1)

from cli import SHORT  # noqa: E402  # the test settings live in tests/cli.py

from cnnzoo.config import CONFIG_MODULE  # noqa: E402

Compose = Callable[..., DictConfig]
Train = Callable[..., dict[str, Any]]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _environment() -> Iterator[None]:
    """Each test starts from the same environment variables: Lightning's WandbLogger, for one,
    sets WANDB_MODE for the rest of the process."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def compose_config(*overrides: str, config: str = "train") -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def run_training(output_dir: Path, *overrides: str) -> dict[str, Any]:
    """``train.train`` on the composed config, writing to ``output_dir``: the run's record."""
    from cnnzoo.train import train

    cfg = compose_config(*overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir.parent / "logs")
    return train(cfg)


def validated_steps(run_dir: Path) -> list[tuple[int, int]]:
    """(epoch, step) of each validation row of a run's ``csv/version_0/metrics.csv``: a resumed
    run that trained nothing twice has one row per epoch, at an unbroken run's steps."""
    with open(run_dir / "csv" / "version_0" / "metrics.csv", newline="") as file:
        return [
            (int(float(row["epoch"])), int(float(row["step"])))
            for row in csv.DictReader(file)
            if row.get("val/acc")
        ]


@pytest.fixture
def compose_cfg() -> Compose:
    return compose_config


@pytest.fixture
def train_run(tmp_path: Path) -> Iterator[Train]:
    """``train_run(*overrides, out=None)``: a short in-process run in ``tmp_path / "run"``."""

    def run(*overrides: str, out: Path | None = None) -> dict[str, Any]:
        return run_training(out or tmp_path / "run", *SHORT, *overrides)

    yield run


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One short default run shared by the tests that read a run back: (run dir, record)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    record = run_training(out, *SHORT, "trainer.max_epochs=3")
    return out, record
