"""How fast the entry points answer without training: ``--help``, ``--cfg job``, ``--info`` and
tab completion, against ``python -c "import hydra"`` and an empty Hydra app's ``--help`` (what
Hydra itself needs, with no config at all). Each command also runs once under
``python -X importtime`` to tell whether it imported torch.

``measure_cli(root)`` times the commands in the checkout ``root`` (its ``src/`` first on
``PYTHONPATH``): pass an older checkout (``git worktree add /tmp/before <commit>``) to compare.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["COMMANDS", "HYDRA_IMPORT", "CliCommand", "imported_modules", "measure_cli"]

# a Hydra app with no config, as small as one can be
_EMPTY_APP = (
    "import sys, hydra\n"
    "def app(cfg): pass\n"
    "sys.argv = ['app', '--help']\n"
    "hydra.main(version_base='1.3', config_path=None, config_name=None)(app)()\n"
)
HEAVY_MODULES = ("torch", "lightning", "timm", "torchvision")


@dataclass(frozen=True)
class CliCommand:
    label: str
    args: tuple[str, ...]  # after `python`
    env: dict[str, str] = field(default_factory=dict)


HYDRA_IMPORT = CliCommand('`python -c "import hydra"` (the reference)', ("-c", "import hydra"))
COMMANDS = (
    HYDRA_IMPORT,
    CliCommand("an empty Hydra app's `--help` (Hydra's own floor)", ("-c", _EMPTY_APP)),
    CliCommand("`python train.py --help`", ("train.py", "--help")),
    CliCommand("`python train.py --cfg job`", ("train.py", "--cfg", "job")),
    CliCommand("`python train.py --info`", ("train.py", "--info")),
    CliCommand("`python train.py -sc install=bash`", ("train.py", "-sc", "install=bash")),
    CliCommand(
        "tab completion of `python train.py model=res`",
        ("train.py", "-sc", "query=bash"),
        {"COMP_LINE": "python train.py model=res"},
    ),
    CliCommand("`python eval.py --help`", ("eval.py", "--help")),
    CliCommand("`python predict.py --help`", ("predict.py", "--help")),
    CliCommand("`python export.py --help`", ("export.py", "--help")),
)


def _env(root: Path, extra: dict[str, str]) -> dict[str, str]:
    paths = [str(root / "src"), str(root), os.environ.get("PYTHONPATH")]
    path = os.pathsep.join(filter(None, paths))
    return {**os.environ, "PYTHONPATH": path, **extra}


def _run(root: Path, args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} failed in {root}:\n{result.stderr[-3000:]}")
    return result


def imported_modules(root: Path, command: CliCommand) -> set[str]:
    """The top-level packages ``command`` imports, read from ``python -X importtime``."""
    result = _run(root, ("-X", "importtime", *command.args), _env(root, command.env))
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def measure_cli(
    root: Path, *, repeats: int, commands: Sequence[CliCommand] = COMMANDS
) -> dict[str, tuple[float, bool]]:
    """``{label: (median seconds over repeats, imports torch/Lightning/timm)}``; the commands run
    in interleaved rounds, so a busy minute slows all of them alike."""
    seconds: dict[str, list[float]] = {command.label: [] for command in commands}
    for _ in range(repeats):
        for command in commands:
            env = _env(root, command.env)
            start = time.perf_counter()
            _run(root, command.args, env)
            seconds[command.label].append(time.perf_counter() - start)
    return {
        command.label: (
            statistics.median(seconds[command.label]),
            bool(imported_modules(root, command) & set(HEAVY_MODULES)),
        )
        for command in commands
    }
