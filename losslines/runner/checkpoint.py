"""Checkpoints of a training run: everything needed to continue it bit for bit.

A checkpoint holds the model (parameters and buffers), the optimizer or the losslines SGD
direction state, every random number generator that training touches (torch's global CPU and
CUDA generators, numpy's and python's global ones, the data-order and augmentation generators),
the position in the data order, and the number of store lines committed when it was taken.
It lives beside the store, on the same filesystem (``<store>.ckpt/latest.pt``: a local folder or
an fsspec URL), and is replaced in one step, so a crash while saving leaves the previous
checkpoint intact.

A checkpoint holds tensors and plain data only (dict, list, tuple, str, int, float, bool, None;
checked when it is saved) and is loaded with ``torch.load(weights_only=True)``: a file beside a
store may come from anywhere, and unpickling it must not run code. A file that needs more is
refused with a ``ValueError``, never loaded another way.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from losslines.store.location import Location, location

CHECKPOINT_FORMAT = 2  # 2: loadable with weights_only=True (1 held NumPy's generator state as arrays)

# Keys that may differ on --resume: where the data lives, how the writer queues and commits, where
# the TensorBoard log goes (or whether there is one) and whether a non-finite value stops the run (a
# run stopped by one continues with train.on_nonfinite = "continue"), not what is measured.
RESUMABLE_CHANGES = frozenset({"data.root", "data.download", "store.max_queued_lines", "store.storage_options",
                               "store.commit_every", "store.tensorboard", "train.on_nonfinite"})


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
        global_rng: ``engine.rng.global_rng_state()`` (tensors and plain data).
        config: the resolved config, to refuse resuming a different run.
        committed_direction_lines: lines committed to the ``directions/`` group.
        committed_steps: entries committed to the ``steps/`` group (the per-step mode).
        nonfinite_steps: steps of the non-finite lines so far (``runner.nonfinite``).
        first_nonfinite: the first non-finite value so far (``NonFinite.as_attrs()``), or None.
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
    nonfinite_steps: tuple[int, ...] = ()
    first_nonfinite: dict[str, Any] | None = None


def save_checkpoint(directory: Location, state: TrainingState) -> Location:
    """Write ``state`` to ``directory/latest.pt``, replacing the last one in one step (a local
    temporary file renamed into place; one object put on object storage); return its location.

    Raises:
        TypeError: ``state`` holds something other than tensors and plain data (a losslines bug:
            the checkpoint could not be loaded with ``weights_only=True``).
    """
    target = location(directory) / "latest.pt"
    payload = {"format": CHECKPOINT_FORMAT, **state.__dict__}
    require_plain(payload, "checkpoint")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    target.write_bytes_atomic(buffer.getvalue())
    return target


_PLAIN_LEAVES = (str, int, float, bool, type(None))
_PLAIN_CONTAINERS = (dict, OrderedDict, list, tuple)


def require_plain(value: Any, where: str) -> None:
    """Check that ``value`` is tensors and plain data all the way down: what
    ``torch.load(weights_only=True)`` loads. Types are matched exactly (a NumPy float is a
    ``float`` subclass, but ``weights_only`` refuses it).

    Raises:
        TypeError: naming the first offending entry, e.g. ``checkpoint.global_rng.numpy``.
    """
    kind = type(value)
    if kind in _PLAIN_LEAVES or kind in (torch.Tensor, torch.nn.Parameter):
        return
    if kind not in _PLAIN_CONTAINERS:
        raise TypeError(f"{where} is a {kind.__module__}.{kind.__qualname__}; a checkpoint holds tensors and "
                        "plain data only")
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(value, dict) and type(key) not in _PLAIN_LEAVES:
            raise TypeError(f"{where} has a key of type {type(key).__qualname__}; a checkpoint holds plain data only")
        require_plain(item, f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]")


def load_checkpoint(directory: Location) -> TrainingState:
    """Read ``directory/latest.pt`` with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no checkpoint there (the run was never checkpointed).
        ValueError: a file that holds non-tensor objects (it is not unpickled), a damaged file,
            or a checkpoint of another format.
    """
    directory = location(directory)
    source = directory / "latest.pt"
    if not source.exists():
        raise FileNotFoundError(f"cannot resume: no checkpoint at {source} (the run stopped before its first "
                                f"checkpoint); delete the store and {directory} to start over")
    try:
        with warnings.catch_warnings():  # a plain pickle is refused below; torch's note on its protocol is noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(io.BytesIO(source.read_bytes()), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):  # not refused for its content: not a pickle at all
            raise ValueError(f"checkpoint {source} is damaged or not a torch checkpoint ({_gist(err)}); start "
                             "the run again") from err
        raise ValueError(f"checkpoint {source} holds non-tensor objects and will not be unpickled (losslines loads "
                         "checkpoints with torch.load(weights_only=True)); it was not written by this version of "
                         "losslines: start the run again") from err
    except (RuntimeError, EOFError, KeyError) as err:
        raise ValueError(f"checkpoint {source} is damaged or not a torch checkpoint ({_gist(err)}); start the run "
                         "again") from err
    if not isinstance(payload, dict) or payload.pop("format", None) != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {source} has an unsupported format (not {CHECKPOINT_FORMAT}); "
                         "start the run again")
    fields = {f.name: f for f in dataclasses.fields(TrainingState)}
    required = {name for name, f in fields.items() if f.default is dataclasses.MISSING}
    if not required <= set(payload) <= set(fields):
        raise ValueError(f"checkpoint {source} does not hold a training state (missing: "
                         f"{sorted(required - set(payload))}, unexpected: {sorted(set(payload) - set(fields))})")
    return TrainingState(**payload)


def _gist(err: BaseException) -> str:
    """``Type: first sentence`` of an error torch raised (its messages run to several lines)."""
    text = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


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

