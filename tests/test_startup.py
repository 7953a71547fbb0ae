"""What the entry points print without training — ``--help``, ``--cfg job``, ``--info``, tab
completion — comes without importing torch, Lightning or timm (seconds each), and still lists
every config group and composes the config. Each command runs as a user runs it, under
``python -X importtime``, which names every module the process imported: a module-level
``import torch`` added to an entry point, or to anything it imports, fails here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from cnnzoo import console
from cnnzoo.config import CONFIG_MODULE, config_options
from tests.cli import ROOT, SCRIPTS, env

HEAVY = {"torch", "lightning", "timm", "torchvision"}


def run_importtime(*args: str, **extra_env: str) -> tuple[str, set[str]]:
    """(stdout, the top-level packages imported) of ``python -X importtime <args>``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "hydra" in imported  # the trace was read
    return result.stdout, imported


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_imports_no_torch(script: str) -> None:
    out, imported = run_importtime(f"{script}.py", "--help")
    assert imported.isdisjoint(HEAVY), sorted(imported & HEAVY)
    assert "== Config ==" in out


def test_help_lists_every_group_and_option() -> None:
    out, _ = run_importtime("train.py", "--help")
    groups = dict(
        line.split(": ", 1) for line in out.split("== Config ==")[0].splitlines() if ": " in line
    )
    for group in ("model", "data", "trainer", "logger", "model/optimizer", "experiment"):
        assert groups[group].split(", ") == config_options(group)


@pytest.mark.parametrize(
    ("args", "extra_env"),
    [
        (("--cfg", "job", "model=resnet18", "data=cifar10"), {}),
        (("--info",), {}),
        (("-sc", "install=bash"), {}),
        (("-sc", "query=bash"), {"COMP_LINE": "python train.py model=res"}),
    ],
    ids=["cfg-job", "info", "completion-script", "completion"],
)
def test_train_prints_without_torch(args: tuple[str, ...], extra_env: dict[str, str]) -> None:
    out, imported = run_importtime("train.py", *args, **extra_env)
    assert imported.isdisjoint(HEAVY), sorted(imported & HEAVY)
    if args[0] == "--cfg":
        cfg = yaml.safe_load(out)
        # composed, not resolved: the resolvers that need torch (the datamodule, the stem's
        # weights) run only when the config is used
        assert cfg["model"]["net"]["name"] == "resnet18"
        assert cfg["model"]["net"]["stem"].startswith("${stem_for:")
        assert cfg["data"]["_target_"].endswith("CIFAR10DataModule")
    if args[-1] == "query=bash":
        assert "model=resnet18" in out.split()


def test_fast_group_listing_answers_as_hydra_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hydra's private config loader, patched for --help (cnnzoo.console.fast_group_listing;
    # tests/test_upstream.py asserts the behaviour it works around)
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.object_type import ObjectType

    original = ConfigLoaderImpl.get_group_options
    monkeypatch.setattr(ConfigLoaderImpl, "get_group_options", original)  # put back afterwards

    def every_answer(loader: ConfigLoaderImpl) -> dict[tuple, list[str]]:
        answers = {}

        def walk(parent: str) -> None:
            for group in loader.list_groups(parent):
                name = f"{parent}/{group}" if parent else group
                for kind in (ObjectType.CONFIG, ObjectType.GROUP):
                    for config_name, overrides in ((None, None), ("train", ["model=resnet18"])):
                        key = (name, kind, config_name)
                        answers[key] = loader.get_group_options(name, kind, config_name, overrides)
                walk(name)

        walk("")
        return answers

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        assert isinstance(loader, ConfigLoaderImpl)
        expected = every_answer(loader)
        console.fast_group_listing()
        assert ConfigLoaderImpl.get_group_options is not original
        assert every_answer(loader) == expected
    assert expected[("model", ObjectType.CONFIG, None)] == config_options("model")
    assert ("hydra/launcher", ObjectType.CONFIG, "train") in expected
