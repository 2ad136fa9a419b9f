"""The global random generators as one snapshot: captured, restored, or preserved around a block.

Measuring must consume no randomness of the training run (docs/design.md, "The measurement"),
and a checkpoint must restore every generator training touches. Both use this one snapshot of
torch's CPU generator, the generators of initialised CUDA devices, Python's ``random`` and
NumPy's global generator, as tensors and plain data only (a checkpoint is loaded with
``torch.load(weights_only=True)``, which refuses NumPy objects).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch


def global_rng_state() -> dict[str, Any]:
    """Snapshot of the global generators: ``{"torch", "numpy", "python"[, "cuda"]}``.

    ``torch`` and ``cuda`` are uint8 state tensors (``cuda``: a list, one per device), ``python``
    is ``random.getstate()`` (a tuple of ints), ``numpy`` is :func:`numpy_rng_state`.
    """
    state = {"torch": torch.get_rng_state(), "numpy": numpy_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators captured by :func:`global_rng_state`."""
    torch.set_rng_state(state["torch"])
    set_numpy_rng_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def numpy_rng_state() -> dict[str, Any]:
    """NumPy's global generator as plain data: ``np.random.get_state(legacy=False)`` with the
    MT19937 key (624 uint32 words) as a tuple of Python ints instead of an array."""
    state = np.random.get_state(legacy=False)
    return {"bit_generator": str(state["bit_generator"]), "key": tuple(state["state"]["key"].tolist()),
            "pos": int(state["state"]["pos"]), "has_gauss": int(state["has_gauss"]), "gauss": float(state["gauss"])}


def set_numpy_rng_state(state: dict[str, Any]) -> None:
    """Restore NumPy's global generator from :func:`numpy_rng_state`."""
    np.random.set_state({"bit_generator": state["bit_generator"],
                         "state": {"key": np.array(state["key"], dtype=np.uint32), "pos": state["pos"]},
                         "has_gauss": state["has_gauss"], "gauss": state["gauss"]})


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore every global generator after the block, whatever it drew."""
    state = global_rng_state()
    try:
        yield
    finally:
        set_global_rng_state(state)


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run the block from a fixed random state: the generators of the CPU and of ``device`` are
    seeded with ``seed`` and restored afterwards (nothing happens for ``seed=None``). Every forward
    of a line in ``dropout="fixed"`` runs inside it, so all its points draw the same dropout mask."""
    if seed is None:
        yield
        return
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(int(seed))
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(int(seed))
        yield

