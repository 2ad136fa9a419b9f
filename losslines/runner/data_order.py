"""Which training samples make the batch of step t: a seeded permutation per epoch, then augmentation.

Step ``t`` of a run with ``E`` batches per epoch takes slot ``t mod E`` of epoch ``t // E``:
samples ``order[slot·B : (slot+1)·B]`` of that epoch's permutation (the remainder of an epoch is
dropped). The permutation of epoch 0 is drawn when the order is created, that of every later
epoch when its first step is reached. ``state_dict`` / ``load_state_dict`` carry the current
permutation and both generators, so a resumed run draws exactly what the uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from losslines.data import augment_batch
from losslines import batched
from losslines.runner.seeds import augment_seed, data_order_seed


@dataclass(frozen=True)
class Batch:
    """The training batch of one step.

    Attributes:
        step, epoch: where in training.
        inputs: ``[B, ...]`` on the run's device (any batched structure), augmented if asked.
        targets: ``[B, ...]`` on the run's device.
        indices: ``[B]`` int64 positions in the training subset (CPU).
    """

    step: int
    epoch: int
    inputs: object
    targets: object
    indices: Tensor


class DataOrder:
    """The batches of a run (see the module docstring).

    Args:
        inputs, targets: the whole training subset, on the run's device (tensors, or tuples/dicts
            of tensors batched along dim 0).
        batch_size: B.
        seed: the run's seed (``runner.seeds`` derives the streams).
        augment: ``"none"`` or an augmentation of ``losslines.data.augment_batch``.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, batch_size: int, *, seed: int, augment: str = "none"):
        self.inputs, self.targets, self.batch_size, self.augment = inputs, targets, batch_size, augment
        self.n = batched.rows(inputs)
        self.steps_per_epoch = self.n // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"config key 'train.batch_size': {batch_size} exceeds the {self.n} training samples")
        self._device = batched.leaves(inputs)[0].device
        self._order_gen = torch.Generator().manual_seed(data_order_seed(seed))
        self._augment_gen = torch.Generator(device=self._device).manual_seed(augment_seed(seed))
        self.epoch_order = torch.randperm(self.n, generator=self._order_gen)

    def batch(self, step: int) -> Batch:
        """The batch of training step ``step`` (steps must be asked for in increasing order)."""
        epoch, slot = divmod(step, self.steps_per_epoch)
        if slot == 0 and step > 0:  # a resume at an epoch boundary draws that epoch's order too
            self.epoch_order = torch.randperm(self.n, generator=self._order_gen)
        idx = self.epoch_order[slot * self.batch_size:(slot + 1) * self.batch_size]
        dev_idx = idx.to(self._device)
        xb, yb = batched.take(self.inputs, dev_idx), batched.take(self.targets, dev_idx)
        if self.augment != "none":
            xb = augment_batch(xb, self.augment, self._augment_gen)
        return Batch(step=step, epoch=epoch, inputs=xb, targets=yb, indices=idx)

    def state_dict(self) -> dict:
        return {"epoch_order": self.epoch_order,
                "generators": {"order": self._order_gen.get_state(), "augment": self._augment_gen.get_state()}}

    def load_state_dict(self, state: dict) -> None:
        self.epoch_order = state["epoch_order"]
        self._order_gen.set_state(state["generators"]["order"])
        self._augment_gen.set_state(state["generators"]["augment"])
