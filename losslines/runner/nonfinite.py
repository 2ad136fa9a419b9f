"""Non-finite values in a run (``train.on_nonfinite``): what the loop watches and what it records.

A diverging run (too large a learning rate) overflows: its training loss, the norm of its update
or the losses it measures become NaN or ±inf. losslines keeps those values as they are — the
sampler emits them, the store writes them, nothing is replaced — and after every step looks at:

* the training loss of the step (the mini-batch loss that was differentiated);
* where the step was measured, the record the sampler emitted (a line, or the per-step values):
  ``direction_norm``, ``update_step`` and every split's mean loss at s = 0.

The first non-finite one (:class:`NonFinite`) is what ``train.on_nonfinite`` acts on: ``stop``
ends the run after the step, its line stored as measured; ``continue`` logs it once and goes on.
Either way the store's root attributes say what happened (informative, docs/store-format.md §7):
``nonfinite_steps``, the steps of the stored lines that :func:`losslines.records.nonfinite_line`
flags (the analysis derives the same flag from the stored arrays), and ``first_nonfinite``, the
first step with a non-finite value (scheduled for a line or not) and which value it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from losslines.records import LineRecord, StepRecord, nonfinite_line

# The store keeps per-line values as float32 (store.schema): a finite value beyond ±3.4e38 is kept
# as ±inf, so the loop judges values as the store will hold them, and its flags match the data.
STORED_DTYPE = np.float32

__all__ = ["NonFinite", "find_nonfinite", "is_nonfinite_line", "read_later"]


@dataclass(frozen=True)
class NonFinite:
    """The first non-finite value of a step.

    Attributes:
        step: the training step.
        quantity: what it was (``"the training loss"``, ``"direction_norm"``, ``"update_step"``,
            ``"loss_train at s = 0"``, ...).
        value: the value (NaN, inf or -inf).
    """

    step: int
    quantity: str
    value: float

    def __str__(self) -> str:
        beyond = " (beyond float32: stored as ±inf)" if np.isfinite(self.value) else ""
        return f"{self.quantity} is {self.value:.6g}{beyond} at step {self.step}"

    def as_attrs(self) -> dict:
        """The ``first_nonfinite`` store attribute (JSON: the value as text)."""
        return {"step": self.step, "quantity": self.quantity, "value": str(self.value)}


def _values(record: LineRecord | StepRecord, zero_index: int) -> dict[str, float]:
    """The values of a record that define a non-finite line, by name, in the order reported."""
    out = {"direction_norm": float(record.direction_norm), "update_step": float(record.update_step)}
    for split, values in record.splits.items():
        loss0 = values.loss0 if isinstance(record, StepRecord) else values.loss[zero_index]
        out[f"loss_{split} at s = 0"] = float(loss0)
    return out


def _as_stored(value) -> np.ndarray:
    with np.errstate(over="ignore"):  # beyond float32: ±inf, as stored
        return np.asarray(value, dtype=np.float64).astype(STORED_DTYPE)


def is_nonfinite_line(record: LineRecord, zero_index: int) -> bool:
    """:func:`losslines.records.nonfinite_line` of one emitted line as the store keeps it
    (``zero_index``: s = 0 on the grid)."""
    return nonfinite_line(_as_stored(record.direction_norm), _as_stored(record.update_step),
                          {split: _as_stored(line.loss[zero_index]) for split, line in record.splits.items()})


def find_nonfinite(step: int, training_loss: float, record: LineRecord | StepRecord | None,
                   zero_index: int) -> NonFinite | None:
    """The first non-finite value of step ``step``: its training loss, then the values of the
    record measured at the step (None: nothing measured), else None.

    Args:
        step: the training step.
        training_loss: the step's mini-batch training loss (nats).
        record: what the sampler emitted at this step, if anything (its ``step`` must be ``step``).
        zero_index: the index of s = 0 on the grid.

    A value counts as non-finite when it is NaN or ±inf as the store keeps it (float32); the
    value reported is the one measured.
    """
    if not np.isfinite(_as_stored(training_loss)):
        return NonFinite(step, "the training loss", training_loss)
    if record is None:
        return None
    for quantity, value in _values(record, zero_index).items():
        if not np.isfinite(_as_stored(value)):
            return NonFinite(step, quantity, value)
    return None


def read_later(loss: torch.Tensor) -> Callable[[], float]:
    """A 0-d tensor's value, to be read after the step: call the result. On a GPU the copy to the
    host is queued now, right after the forward, and reading it waits for the forward only, not
    for the backward and the optimizer step queued after it."""
    value = loss.detach()
    if value.device.type != "cuda":
        return lambda: float(value)
    host = value.to("cpu", non_blocking=True)  # into pinned memory, asynchronously
    done = torch.cuda.Event()
    done.record()

    def read() -> float:
        done.synchronize()
        return float(host)
    return read
