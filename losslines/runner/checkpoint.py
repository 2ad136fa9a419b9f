"""Checkpoints of a training run: everything needed to continue it bit for bit.

A checkpoint holds the model (parameters and buffers), the optimizer or the losslines SGD
direction state, every random number generator that training touches (torch's global CPU and
CUDA generators, numpy's and python's global ones, the data-order and augmentation generators),
the position in the data order, and the number of store lines committed when it was taken.
It lives beside the store, on the same filesystem (``<store>.ckpt/latest.pt``: a local folder or
an fsspec URL), and is replaced in one step, so a crash while saving leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from losslines.store.location import Location, location

CHECKPOINT_FORMAT = 1

# Keys that may differ on --resume: where the data lives and how the writer queues, not what is measured.
RESUMABLE_CHANGES = frozenset({"data.root", "data.download", "store.max_queued_lines", "store.storage_options"})


def checkpoint_dir(store: str | Path | Location) -> Location:
    """The checkpoint folder of a store, beside it on the same filesystem: ``<store>.ckpt``."""
    return location(store).sibling(".ckpt")


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
        global_rng: ``engine.rng.global_rng_state()``.
        config: the resolved config, to refuse resuming a different run.
        committed_direction_lines: lines committed to the ``directions/`` group.
        committed_steps: entries committed to the ``steps/`` group (the per-step mode).
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
    committed_steps: int = 0


def save_checkpoint(directory: Location, state: TrainingState) -> Location:
    """Write ``state`` to ``directory/latest.pt``, replacing the last one in one step (a local
    temporary file renamed into place; one object put on object storage); return its location."""
    target = location(directory) / "latest.pt"
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state.__dict__}, buffer)
    target.write_bytes_atomic(buffer.getvalue())
    return target


def load_checkpoint(directory: Location) -> TrainingState:
    """Read ``directory/latest.pt``.

    Raises:
        FileNotFoundError: no checkpoint there (the run was never checkpointed).
        ValueError: a checkpoint of another format.
    """
    directory = location(directory)
    source = directory / "latest.pt"
    if not source.exists():
        raise FileNotFoundError(f"cannot resume: no checkpoint at {source} (the run stopped before its first "
                                f"checkpoint); delete the store and {directory} to start over")
    payload = torch.load(io.BytesIO(source.read_bytes()), map_location="cpu", weights_only=False)
    if payload.pop("format", None) != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {source} has an unsupported format; start the run again")
    return TrainingState(**payload)


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out


def check_resumable(state: TrainingState, config: dict, directory: Path) -> None:
    """Refuse a checkpoint taken under another config (``RESUMABLE_CHANGES`` aside).

    Raises:
        ValueError: naming the changed keys.
    """
    changed = [k for k in config_differences(state.config, config) if k not in RESUMABLE_CHANGES]
    if changed:
        raise ValueError(f"checkpoint in {directory} belongs to a different config (changed: {', '.join(changed)}); "
                         "resume with the same config and --set values, or start a new store")

