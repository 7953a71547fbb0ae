"""cnnzoo as a package: every README command composes as written, and the built wheel, installed
alone in a new environment, runs every entry point from an empty folder far from the checkout."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from itertools import product
from pathlib import Path

import pytest
from cli import ROOT, env
from conftest import compose_config
from hydra.core.override_parser.overrides_parser import OverridesParser

ENTRY_CONFIGS = {"train.py": "train", "eval.py": "eval", "predict.py": "predict"}
ENTRY_CONFIGS["export.py"] = "export"


def readme_commands() -> list[str]:
    """Every ``python <entry>.py …`` line of the README's code blocks, comments removed."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if re.match(r"^(\S+=\S+ )*python (train|eval|predict|export)\.py", line):
                lines.append(line)
    return lines


def _jobs(args: list[str]) -> list[list[str]]:
    """The overrides of each job a command line starts (a sweep `a=1,2` is two jobs)."""
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    return [list(job) for job in product(*choices)]


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_composes_as_written(line: str) -> None:
    words = shlex.split(line.replace("<", "_").replace(">", "_"))
    words = words[words.index("python") + 1 :]
    entry, args = words[0], words[1:]
    if any(a.startswith(("--config-dir", "hydra.searchpath")) for a in args):
        pytest.skip("needs a config dir of the user's (the wheel test adds one)")
    for job in _jobs(args):
        compose_config(*job, config=ENTRY_CONFIGS[entry])


def test_the_readme_has_commands_to_check() -> None:
    assert len(readme_commands()) > 40


@pytest.mark.slow  # builds the wheel and runs each entry point once: ~2 minutes on 2 CPU cores
def test_the_wheel_installed_alone_runs_every_entry_point_from_an_empty_folder(
    tmp_path: Path,
) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(ROOT)],
        check=True, capture_output=True, env=env(),
    )  # fmt: skip
    (wheel,) = dist.glob("cnnzoo-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    # the dependencies: this environment's packages (not its editable cnnzoo, whose .pth hook
    # only runs from a site directory)
    site = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    (venv_site,) = (venv / "lib").glob("python*/site-packages")
    (venv_site / "dependencies.pth").write_text(f"{site}\n")

    work = tmp_path / "elsewhere"
    (work / "my_configs" / "experiment").mkdir(parents=True)
    (work / "my_configs" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ntask_name: mine\ntrainer:\n  max_epochs: 1\n"
    )

    def cnnzoo(command: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [venv / "bin" / f"cnnzoo-{command}", *args],
            cwd=work, env=env(), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    cnnzoo("train", "--config-dir", "my_configs", "experiment=mine", "debug=limit",
           "task_name=mine", "callbacks.rich_progress_bar=null")  # fmt: skip
    (run_dir,) = (work / "logs" / "mine" / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    cnnzoo("eval", f"ckpt_path={ckpt}")
    assert list((work / "logs" / "eval" / "runs").glob("*/summary.json"))

    from PIL import Image

    Image.new("L", (28, 28)).save(work / "digit.png")
    predictions = json.loads(cnnzoo("predict", f"ckpt_path={ckpt}", "inputs=digit.png",
                                    "--json").stdout)  # fmt: skip
    assert predictions[0]["path"] == "digit.png"
    cnnzoo("export", f"ckpt_path={ckpt}", "format=onnx", "output=model.onnx")
    assert (work / "model.onnx").stat().st_size > 0
    cnnzoo("report", "logs")
    assert (work / "logs" / "report" / "report.md").is_file()
    assert not (work / "configs").exists()  # nothing came from a checkout


def test_the_shared_config_parts_are_not_options() -> None:
    from hydra.errors import MissingConfigException

    from cnnzoo.config import config_options

    for group in ("model", "data", "hparams_search", "callbacks", "logger", "trainer"):
        assert not [name for name in config_options(group) if name.startswith("_")], group
    with pytest.raises(MissingConfigException, match="Available options in 'data'"):
        compose_config("data=_data")


def test_the_configs_save_checkpoints_where_resume_looks_for_them() -> None:
    """The run-dir layout is stated once in the configs (``paths.checkpoint_dir``) and once in
    code (``cnnzoo.records.CHECKPOINT_DIR``, what ``ckpt_path=last`` and a resume read)."""
    from cnnzoo.records import CHECKPOINT_DIR

    cfg = compose_config("paths.output_dir=/run", "callbacks=ema")
    assert Path(cfg.paths.checkpoint_dir) == Path("/run") / CHECKPOINT_DIR
    saving = [node for node in cfg.callbacks.values() if node and "Checkpoint" in node._target_]
    assert len(saving) == 3  # best.ckpt, last.ckpt and the interrupt's last.ckpt
    assert {node.dirpath for node in saving} == {cfg.paths.checkpoint_dir}


def test_a_missing_extra_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnzoo.errors import UserError
    from cnnzoo.trackers import instantiate_loggers

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    cfg = compose_config("logger=wandb")
    with pytest.raises(UserError, match=r"pip install 'cnnzoo\[wandb\]'"):
        instantiate_loggers(cfg.logger)
