"""Random states in every checkpoint, so that a resumed run draws what the unbroken run would."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

__all__ = ["RngState"]


class RngState(L.Callback):
    """Saves the python, numpy and torch (CPU and CUDA) random states in each checkpoint and
    restores them on resume, so that the data order and augmentations after a resume are those
    the unbroken run would have drawn. Plain tensors and tuples: the file still loads with
    ``torch.load(weights_only=True)``."""

    def state_dict(self) -> dict[str, Any]:
        state = np.random.get_state()
        assert isinstance(state, tuple)  # numpy's global generator is MT19937: a legacy tuple
        name, keys, position, has_gauss, cached_gaussian = state
        return {
            "python": random.getstate(),
            "numpy": (
                name,
                torch.from_numpy(keys.astype(np.int64)),
                position,
                has_gauss,
                cached_gaussian,
            ),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, position, has_gauss, cached_gaussian = state_dict["numpy"]
        np.random.set_state(
            (name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
        )
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
