"""Resuming a run: decided once, checked before anything is written, continued in its own dir.

``ResumePlan`` is the one decision: which checkpoint training continues from, the run dir whose
record it continues, and the epoch and step it was saved at. It is made once per process
(``plan_resume``), from ``ckpt_path``:

- a single run, ``ckpt_path=last``: the newest ``last.ckpt`` of the runs under
  ``logs/<task_name>``; ``ckpt_path=<run>/checkpoints/<file>``: that file. Either continues in
  the checkpoint's own run dir, and that run's own overrides are this run's defaults (yours still
  override them): ``python train.py ckpt_path=<run>/checkpoints/last.ckpt`` resumes a ResNet run
  as a ResNet without repeating ``model=`` (``resume_command_line``, before Hydra composes).
- a job of a multirun, ``ckpt_path=last``: **this job's own** newest checkpoint (its
  ``checkpoints/last.ckpt``, or a newer ``hpc_ckpt_<n>.ckpt`` that Lightning saved on SLURM's
  signal), or a fresh start when it has none — never another job's run. A requeued or rerun job
  is resumed this way by the code that reruns it. An explicit file resumes from it, written into
  the job's own dir.

``check_resumable`` compares the checkpoint with the network and optimizer this run built,
before the run dir is touched: a mismatch is one message naming the key that differs, and the
run's record stays byte-identical (the attempt's own config, log and error go to
``<run>/attempts/<time>/``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnzoo.errors import UserError
from cnnzoo.records import ATTEMPTS_DIR, CHECKPOINT_DIR, override_key

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cnnzoo.module import ImageClassifier

__all__ = [
    "ResumePlan",
    "check_resumable",
    "find_last_checkpoint",
    "newest_checkpoint",
    "plan_resume",
    "resume_command_line",
    "run_dir_of",
]

log = logging.getLogger(__name__)

# Lightning's checkpoint on SLURM's requeue signal, in the trainer's default_root_dir
HPC_CHECKPOINTS = "hpc_ckpt_*.ckpt"
# overrides of the resumed run that a resume never takes over from it
_NOT_INHERITED = ("ckpt_path",)


@dataclass(frozen=True)
class ResumePlan:
    """What a resumed run reads and where it writes: made once, read by everything else."""

    checkpoint: Path
    # the cnnzoo run dir the checkpoint belongs to (its record continues there), or None for a
    # checkpoint from elsewhere (a fresh run dir that starts from its weights and state)
    run_dir: Path | None
    epoch: int
    step: int
    # the checkpoint's network (state-dict key -> shape) and optimizer, for check_resumable
    shapes: dict[str, tuple[int, ...]] = field(repr=False)
    optimizer: dict[str, Any] | None = field(repr=False)
    optimizer_groups: list[tuple[frozenset[str], int]] = field(repr=False)
    # the checkpoint's network, as its config names it, and its settings (for messages)
    net: str = "?"
    net_config: dict[str, Any] = field(default_factory=dict, repr=False)
    # lines for the run's log, said once logging is set up
    notes: tuple[str, ...] = ()

    def continues(self, run_dir: str | Path) -> bool:
        """Whether this run writes into the checkpoint's own run dir (its logs continue)."""
        return self.run_dir is not None and self.run_dir.resolve() == Path(run_dir).resolve()

    def with_notes(self, *notes: str) -> ResumePlan:
        return ResumePlan(**{**self.__dict__, "notes": (*self.notes, *notes)})


def run_dir_of(checkpoint: Path) -> Path | None:
    """The cnnzoo run dir a checkpoint belongs to: ``<run>/checkpoints/x.ckpt`` or Lightning's
    ``<run>/hpc_ckpt_<n>.ckpt``, where ``<run>`` holds Hydra's ``.hydra`` record."""
    folder = checkpoint.resolve().parent
    run_dir = folder.parent if folder.name == CHECKPOINT_DIR else folder
    return run_dir if (run_dir / ".hydra").is_dir() else None


def _checkpoint_files(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*.ckpt") if not p.name.startswith(".")]


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """A run dir's checkpoint to resume from: the newer of ``checkpoints/last.ckpt`` and a
    Lightning ``hpc_ckpt_<n>.ckpt`` (saved on SLURM's requeue signal), if any."""
    run_dir = Path(run_dir)
    found = [*run_dir.glob(HPC_CHECKPOINTS), run_dir / CHECKPOINT_DIR / "last.ckpt"]
    found = [path for path in found if path.is_file()]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def find_last_checkpoint(task_dir: str | Path) -> Path | None:
    """The newest ``last.ckpt`` of the runs (and multirun jobs) under ``logs/<task_name>``."""
    task_dir = Path(task_dir)
    found = [
        *task_dir.glob(f"runs/*/{CHECKPOINT_DIR}/last.ckpt"),
        *task_dir.glob(f"multiruns/*/*/{CHECKPOINT_DIR}/last.ckpt"),
    ]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def _requested(ckpt_path: str, task_dir: Path, job_dir: Path | None) -> Path | None:
    if ckpt_path != "last":
        path = Path(ckpt_path)
        if not path.is_file():
            raise UserError(f"ckpt_path={ckpt_path}: no such checkpoint file (or `last`)")
        return path
    if job_dir is not None:
        return newest_checkpoint(job_dir)
    found = find_last_checkpoint(task_dir)
    if found is None:
        raise UserError(
            f"ckpt_path=last: no run under {task_dir} has {CHECKPOINT_DIR}/last.ckpt; "
            f"give a checkpoint file instead (ckpt_path=<run>/{CHECKPOINT_DIR}/last.ckpt)"
        )
    return found


def _readable(path: Path, trusted: Sequence[str]) -> tuple[dict[str, Any], Path, list[str]]:
    """The checkpoint at ``path``, or else the newest readable one beside it (a kill can
    truncate a file that a copy or an old Lightning wrote in place)."""
    from cnnzoo.checkpoint import read_checkpoint

    try:
        return read_checkpoint(path, trusted), path, []
    except UserError as error:
        problem = error
    readable = []
    for other in _checkpoint_files(path.parent):
        if other != path:
            try:
                checkpoint = read_checkpoint(other, trusted)
            except UserError:
                continue
            readable.append(
                ((checkpoint.get("epoch", -1), checkpoint.get("global_step", -1)), other)
            )
    if not readable:
        raise UserError(f"cannot resume: {problem}")
    _, fallback = max(readable)
    note = f"{problem}; resuming instead from {fallback}, the newest readable checkpoint of the run"
    return read_checkpoint(fallback, trusted), fallback, [note]


def plan_resume(
    ckpt_path: str | None,
    *,
    task_dir: str | Path,
    job_dir: str | Path | None = None,
    trusted: Sequence[str] = (),
) -> ResumePlan | None:
    """The plan for ``ckpt_path`` (a file, ``last`` or None). ``job_dir``: this multirun job's
    own dir, where ``last`` looks; ``trusted``: ``_target_`` prefixes beyond cnnzoo's own."""
    if ckpt_path is None:
        return None
    job = None if job_dir is None else Path(job_dir)
    requested = _requested(str(ckpt_path), Path(task_dir), job)
    if requested is None:
        log.info("ckpt_path=last: job %s has no checkpoint of its own yet; starting it", job)
        return None
    checkpoint, path, notes = _readable(requested, trusted)
    if str(ckpt_path) == "last":
        notes.insert(0, f"ckpt_path=last: resuming from {path}")
    state = checkpoint["state_dict"]
    optimizers = checkpoint.get("optimizer_states") or []
    groups = (optimizers[0].get("param_groups") or []) if optimizers else []
    return ResumePlan(
        checkpoint=path,
        run_dir=run_dir_of(path),
        epoch=int(checkpoint.get("epoch", -1)),
        step=int(checkpoint.get("global_step", -1)),
        shapes={key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")},
        optimizer=checkpoint["hyper_parameters"].get("optimizer"),
        net=_net_name(checkpoint["hyper_parameters"].get("net")),
        net_config=dict(checkpoint["hyper_parameters"].get("net") or {}),
        optimizer_groups=[
            (frozenset(k for k in group if k not in _SCHEDULER_KEYS), len(group.get("params", [])))
            for group in groups
        ],
        notes=tuple(notes),
    )


def _flat(node: Any, prefix: str = "model.net") -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flat(value, f"{prefix}.{key}"))
    return flat


def _differing_settings(theirs: Any, ours: Any) -> str:
    """The network settings (``model.net.*``) whose values differ between the checkpoint's
    config and this run's — what to change, rather than the first weight whose shape differs.
    Weights are left out: a run's ``weights`` are where it started, not its shape."""
    from cnnzoo.models.weights import PRETRAINED_KEYS

    a, b = _flat(theirs or {}), _flat(ours or {})
    keys = [
        key
        for key in dict.fromkeys([*a, *b])
        if a.get(key) != b.get(key) and key.rsplit(".", 1)[-1] not in PRETRAINED_KEYS
    ]
    return ", ".join(f"{key}: {a.get(key)} in the checkpoint, {b.get(key)} here" for key in keys)


# keys a learning-rate scheduler adds to an optimizer's param groups
_SCHEDULER_KEYS = frozenset({"params", "initial_lr"})


def _net_name(node: dict[str, Any] | None) -> str:
    node = node or {}
    return str(node.get("name") or node.get("model_name") or _name(node))


def _name(node: dict[str, Any] | None) -> str:
    target = (node or {}).get("_target_", "?")
    return str(target).rsplit(".", 1)[-1]


def check_resumable(plan: ResumePlan, model: ImageClassifier) -> None:
    """Refuse, in one message naming the key that differs, a checkpoint whose network or
    optimizer is not the one this run built — before anything is written."""
    mine = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    nets = f"the checkpoint's is {plan.net}, this run's {_net_name(model.hparams.get('net'))}"
    settings_differ = _differing_settings(plan.net_config, model.hparams.get("net"))
    if settings_differ:
        nets += f"; settings that differ: {settings_differ}"
    where = f"cannot resume from {plan.checkpoint}"
    hint = (
        "resume with the run's own model settings (a resume of a cnnzoo run takes them by "
        "default), or start a new run from its weights with model.net.weights=<file>"
    )
    missing = sorted(set(plan.shapes) - set(mine))
    extra = sorted(set(mine) - set(plan.shapes))
    if missing or extra:
        key = (missing or extra)[0]
        side = "this run's network lacks" if missing else "the checkpoint lacks"
        count = len(missing) + len(extra)
        raise UserError(
            f"{where}: its network differs from this run's ({nets}): {side} `{key}` "
            f"({count} key(s) differ); {hint}"
        )
    for key, shape in plan.shapes.items():
        if mine[key] != shape:
            raise UserError(
                f"{where}: its network differs from this run's ({nets}): `{key}` is "
                f"{list(shape)} in the checkpoint and {list(mine[key])} here; {hint}"
            )
    if not plan.optimizer_groups:
        return
    optimizer = model.build_optimizer()
    theirs, ours = _name(plan.optimizer), _name(model.hparams.get("optimizer"))
    groups = [
        (frozenset(k for k in group if k not in _SCHEDULER_KEYS), len(group["params"]))
        for group in optimizer.param_groups
    ]
    settings = f"resume with the run's own optimizer (model/optimizer={theirs.lower()})"
    if len(groups) != len(plan.optimizer_groups):
        raise UserError(
            f"{where}: its optimizer has {len(plan.optimizer_groups)} parameter group(s), "
            f"this run's {len(groups)} (model.decay_norm_and_bias or "
            f"model.backbone_lr_scale differ?); {settings}"
        )
    for index, ((keys, size), (saved_keys, saved_size)) in enumerate(
        zip(groups, plan.optimizer_groups, strict=True)
    ):
        differ = sorted(keys ^ saved_keys)
        if differ:
            raise UserError(
                f"{where}: its optimizer is {theirs}, this run's is {ours}: the setting "
                f"`{differ[0]}` is in one and not the other; {settings}"
            )
        if size != saved_size:
            raise UserError(
                f"{where}: its optimizer's parameter group {index} has {saved_size} tensors, "
                f"this run's {size}; {settings}"
            )


# --- before Hydra composes: a resume takes its run's own settings and writes to an attempt -------


def split_command_line(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides) of a command line's arguments, as
    Hydra's own argument parser reads them."""
    overrides = list(_parse(argv).overrides)
    flags = [arg for arg in argv if arg not in overrides]
    return flags, overrides


def _parse(argv: Sequence[str]) -> Any:
    # Workaround: Hydra's own command-line parser (what hydra.main reads) is private (measured
    # on hydra-core 1.3.8; tests/test_upstream.py::
    # test_hydras_command_line_parser_still_splits_flags_from_overrides)
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_known_args(list(argv))[0]


def _compose(args: Any) -> DictConfig:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from cnnzoo.config import CONFIG_MODULE

    extra = []
    if args.config_dir:
        extra.append(f"hydra.searchpath=[file://{os.path.abspath(args.config_dir)}]")
    from hydra.errors import HydraException

    from cnnzoo.errors import UserError

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            return compose(
                config_name=args.config_name or "train", overrides=[*args.overrides, *extra]
            )
    except HydraException as error:
        if isinstance(error, UserError):
            raise
        # an unknown key or option on a resume's command line: Hydra's own message, as without
        # ckpt_path (this runs before Hydra's main, which would print it so)
        raise UserError(str(error)) from None
    finally:
        GlobalHydra.instance().clear()


_PLANS: dict[str, ResumePlan] = {}


def planned(ckpt_path: str | None) -> ResumePlan | None:
    """The plan ``resume_command_line`` made in this process for ``ckpt_path``, if any."""
    return None if ckpt_path is None else _PLANS.get(str(ckpt_path))


def resume_command_line(argv: list[str]) -> list[str]:
    """A single run that resumes from a cnnzoo run's checkpoint (``ckpt_path=…``): its
    arguments rewritten so that the run's own overrides are the defaults, the checkpoint is the
    file ``last`` found, the run writes into its own dir, and Hydra's record of this attempt (its
    config, its log) goes to ``<run>/attempts/<time>/`` until the attempt has passed its checks.
    Anything else is returned unchanged."""
    args = _parse(argv)
    if (
        args.multirun
        or args.help
        or args.hydra_help
        or args.cfg
        or args.info
        or (args.shell_completion or args.config_path or args.experimental_rerun)
    ):
        return list(argv)  # not a single run from the shipped configs: nothing to resume here
    flags, overrides = split_command_line(argv)
    keys = [override_key(o) for o in overrides]
    if "ckpt_path" not in keys or any(o.startswith("hydra.run.dir=") for o in overrides):
        return list(argv)
    from omegaconf import OmegaConf

    from cnnzoo.checkpoint import config_targets

    cfg = _compose(args)
    if not cfg.get("train") or cfg.get("ckpt_path") is None:
        return list(argv)
    trusted = [t for _, t in config_targets(OmegaConf.to_container(cfg.model))]
    task_dir = Path(cfg.paths.log_dir) / cfg.task_name
    plan = plan_resume(cfg.ckpt_path, task_dir=task_dir, trusted=trusted)
    if plan is None or plan.run_dir is None:
        if plan is not None:
            _PLANS[str(plan.checkpoint)] = plan
            overrides = [o for o, k in zip(overrides, keys, strict=True) if k != "ckpt_path"]
            overrides.append(f"ckpt_path={plan.checkpoint}")
        return [*flags, *overrides]
    run_dir = plan.run_dir
    saved = run_dir / ".hydra" / "overrides.yaml"
    own = [str(o) for o in (OmegaConf.load(saved) if saved.is_file() else [])]
    # the user's keys replace the run's, and a group the user chose again drops the run's
    # values inside it (model=lenet: not the resumed ResNet's model.net.layers)
    inherited = [
        o
        for o in own
        if override_key(o) not in {*keys, *_NOT_INHERITED}
        and not override_key(o).startswith(tuple(f"{k}." for k in keys))
    ]
    mine = [o for o, k in zip(overrides, keys, strict=True) if k != "ckpt_path"]
    if inherited:
        plan = plan.with_notes(
            f"resuming {run_dir}: its own settings apply unless overridden: " + " ".join(inherited)
        )
    _PLANS[str(plan.checkpoint)] = plan
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    attempt = run_dir / ATTEMPTS_DIR / stamp
    attempt.mkdir(parents=True)  # Hydra opens the attempt's log before it writes its config
    return [
        *flags,
        *inherited,
        *mine,
        f"ckpt_path={plan.checkpoint}",
        f"hydra.run.dir={run_dir}",
        f"hydra.output_subdir={ATTEMPTS_DIR}/{stamp}/.hydra",
        f"hydra.job_logging.handlers.file.filename={attempt}/train.log",
    ]


def rewrite_command_line() -> None:
    """``resume_command_line`` applied to ``sys.argv`` in place (the entry point's step)."""
    sys.argv[1:] = resume_command_line(sys.argv[1:])
