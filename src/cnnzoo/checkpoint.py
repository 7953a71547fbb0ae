"""Checkpoints: saved atomically, found, read with clear errors, and loaded without running code.

- ``AtomicCheckpointIO`` (the trainer's checkpoint plugin) writes every checkpoint to a temporary
  file beside its destination, fsyncs it and renames it into place: a save killed halfway (kill -9,
  a full disk) leaves the previous file intact, and a save that fails stops the run naming the
  path and the reason.
- ``read_checkpoint`` loads a file with ``torch.load(weights_only=True)`` and turns a missing,
  empty, truncated or foreign file into one message; ``check_targets`` refuses any ``_target_`` in
  a checkpoint's (or a run's saved) config outside an allowlist, so a shared file runs no code.
- ``load_classifier`` rebuilds the ``ImageClassifier`` of a checkpoint: what eval, predict, export
  and the test at the end of training all use.
- Resuming (which checkpoint, which run dir) is decided in ``cnnzoo.resume``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from cnnzoo.errors import UserError

if TYPE_CHECKING:
    from cnnzoo.module import ImageClassifier

__all__ = [
    "ALLOWED_TARGETS",
    "AtomicCheckpointIO",
    "CheckpointSaveError",
    "check_targets",
    "config_targets",
    "load_classifier",
    "read_checkpoint",
    "remove_stale_temp_files",
    "run_config",
]

log = logging.getLogger(__name__)

# What a checkpoint's hyperparameters or a run's saved config may instantiate: cnnzoo's nets,
# optimisation and data, torch's layers and optimisers. timm and torchvision nets are built through
# cnnzoo.models.backbones, which takes a model name, never a callable.
ALLOWED_TARGETS = (
    "cnnzoo.models.",
    "cnnzoo.optim.",
    "cnnzoo.data.",
    "torch.nn.",
    "torch.optim.",
)
TEMP_SUFFIX = ".tmp"


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (unwritable folder, full disk, ...)."""


# Workaround: Lightning's save writes its temporary file in the system temp dir and swallows a
# PermissionError (measured on lightning 2.6.6, fsspec 2026.9.0; tests/test_upstream.py::
# test_lightnings_checkpoint_save_writes_its_temporary_file_in_the_system_temp_dir, ::
# test_lightnings_checkpoint_save_swallows_a_permission_error)
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, with saves that are atomic in the destination folder.

    Lightning's own save writes through a temporary file that fsspec puts in the system temp dir,
    then moves it: across filesystems the move is a copy, and a kill during it leaves a truncated
    checkpoint; a permission error is swallowed. Remote paths (``s3://``...) keep Lightning's way.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        path = Path(path)
        temp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
            _fsync_dir(path.parent)
        except OSError as error:
            with contextlib.suppress(OSError):
                temp.unlink()
            reason = error.strerror or str(error)
            raise CheckpointSaveError(
                f"could not save the checkpoint {path}: {reason}; nothing was overwritten, and "
                "the run stopped so that no more training goes unsaved"
            ) from error

    def remove_checkpoint(self, path: Any) -> None:
        # ModelCheckpoint removes a file it replaces; a missing one is not an error
        if "://" not in str(path):
            Path(path).unlink(missing_ok=True)
        else:
            super().remove_checkpoint(path)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files of saves whose process is gone (a kill mid-save), never a
    live process's in-flight save. Returns what was removed."""
    removed = []
    for temp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        owner = temp.name.removesuffix(TEMP_SUFFIX).rsplit(".", 1)[-1]
        if owner.isdigit() and _alive(int(owner)):
            continue
        temp.unlink(missing_ok=True)
        removed.append(temp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; not possible on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reading ------------------------------------------------------------------------------------


def config_targets(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(config key, _target_)`` in a plain (container) config."""
    if isinstance(node, Mapping):
        for name, value in node.items():
            child = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                yield key or "<root>", str(value)
            else:
                yield from config_targets(value, child)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from config_targets(value, f"{key}[{index}]")


def check_targets(config: Any, *, source: str | Path, trusted: Sequence[str] = ()) -> None:
    """Refuse a config that would instantiate anything outside :data:`ALLOWED_TARGETS` and the
    ``trusted`` prefixes (a user's own classes: ``trusted_targets=[mypkg.]``)."""
    allowed = (*ALLOWED_TARGETS, *trusted)
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=False)
    for key, target in config_targets(config):
        module = target.rsplit(".", 1)[0] + "."
        if not target.startswith(allowed) or "__" in target or ".__main__." in module:
            raise UserError(
                f"{source}: refusing to load it: `{key}._target_: {target}` is not something "
                f"cnnzoo builds (allowed: {', '.join(p + '*' for p in allowed)}). A checkpoint "
                "or config from elsewhere may only name cnnzoo's own classes; trust your own "
                "with trusted_targets=[<module prefix>]"
            )


def read_checkpoint(path: str | Path, trusted: Sequence[str] = ()) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded on the CPU with ``weights_only=True`` and checked: a
    cnnzoo checkpoint (hyperparameters + state dict) whose config names only allowed targets."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ckpt_path={path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty: it is not a checkpoint (an interrupted copy?)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler's errors for a bad file are of every kind
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(
            f"{path} cannot be read as a checkpoint (truncated or not a PyTorch file): "
            f"{type(error).__name__}: {first_line[:200]}"
        ) from error
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= set(
        checkpoint
    ):
        plain = isinstance(checkpoint, dict) and all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()
        )
        hint = (
            " It holds a plain state dict (weights only): start training from it with "
            f"`model.net.weights={path}`."
            if plain
            else ""
        )
        raise UserError(f"{path} is not a cnnzoo checkpoint (no hyperparameters).{hint}")
    check_targets(checkpoint["hyper_parameters"], source=path, trusted=trusted)
    return checkpoint


def load_classifier(path: str | Path, trusted: Sequence[str] = ()) -> ImageClassifier:
    """The ``ImageClassifier`` a checkpoint holds, on the CPU, in eval mode.

    With an EMA callback the checkpoint's ``state_dict`` holds the averaged weights (the ones
    validation scored), and these are what every consumer loads.
    """
    from cnnzoo.module import ImageClassifier

    checkpoint = read_checkpoint(path, trusted)
    model = ImageClassifier(**checkpoint["hyper_parameters"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def run_config(ckpt_path: str | Path, trusted: Sequence[str] = ()) -> DictConfig | None:
    """The saved config of the run that wrote ``ckpt_path`` (``<run>/checkpoints/x.ckpt``),
    checked like a checkpoint; ``None`` when the file is not inside a run directory."""
    saved = Path(ckpt_path).resolve().parent.parent / ".hydra" / "config.yaml"
    if not saved.is_file():
        return None
    # OmegaConf.load may give a list; Hydra saves the run's config as a mapping
    config = cast(DictConfig, OmegaConf.load(saved))
    check_targets(OmegaConf.to_container(config.get("data") or {}), source=saved, trusted=trusted)
    return config
