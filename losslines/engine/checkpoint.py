"""Checkpoints of a training run: everything needed to continue it bit for bit.

A checkpoint holds the model (parameters and buffers), the optimizer or the losslines SGD
direction state, every random number generator that training touches (torch's global CPU and
CUDA generators, numpy's and python's global ones, the data-order and augmentation generators),
the position in the data order, and the number of store lines committed when it was taken.
It lives beside the store (``<store>.ckpt/latest.pt``) and is replaced atomically, so a crash
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = 1


def checkpoint_dir(store_path: str | Path) -> Path:
    """The checkpoint directory of a store: ``<store>.ckpt``."""
    return Path(str(store_path).rstrip("/") + ".ckpt")


def global_rng_state() -> dict[str, Any]:
    """Snapshot of the global generators (torch CPU/CUDA, numpy, python)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators captured by :func:`global_rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class TrainingState:
    """Where a run stands between two steps.

    Attributes:
        step: the next step to take (steps ``[0, step)`` are done).
        committed_lines: store lines committed when the state was taken.
        epoch_order: ``[N]`` int64 permutation of the training indices for the current epoch.
        epoch: current epoch.
        model: ``model.state_dict()``.
        stepper: state of the optimizer or of the losslines SGD direction.
        generators: ``{"order": ..., "augment": ...}`` states of the run's own generators.
        global_rng: :func:`global_rng_state`.
        config: the resolved config, to refuse resuming a different run.
        committed_direction_lines: lines committed to the ``directions/`` group.
    """

    step: int
    committed_lines: int
    epoch: int
    epoch_order: torch.Tensor
    model: dict[str, Any]
    stepper: dict[str, Any]
    generators: dict[str, torch.Tensor]
    global_rng: dict[str, Any]
    config: dict[str, Any]
    committed_direction_lines: int = 0


def save_checkpoint(directory: Path, state: TrainingState) -> Path:
    """Write ``state`` to ``directory/latest.pt`` atomically; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "latest.pt"
    tmp = directory / "latest.pt.tmp"
    payload = {"format": CHECKPOINT_FORMAT, **state.__dict__}
    torch.save(payload, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: Path) -> TrainingState:
    """Read ``directory/latest.pt``.

    Raises:
        FileNotFoundError: no checkpoint there (the run was never checkpointed).
        ValueError: a checkpoint of another format.
    """
    path = directory / "latest.pt"
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: no checkpoint at {path} (the run stopped before its first "
                                f"checkpoint); delete the store and {directory} to start over")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.pop("format", None) != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} has an unsupported format; start the run again")
    return TrainingState(**payload)
