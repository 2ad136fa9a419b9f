"""Lines measured inside a Lightning run: a ``Callback`` around each optimizer step.

::

    sampler = LineSampler(model, grid=make_grid(), schedule=Schedule.every(10), train=(x, y),
                          sink=StoreSink.create("runs/lit.zarr", ...), batch_size=128)
    trainer = lightning.Trainer(max_steps=1000, callbacks=[LineSamplerCallback(sampler)])
    trainer.fit(module, loader)

Lightning runs ``training_step`` and ``backward`` inside the optimizer's closure and calls
``on_before_optimizer_step`` just before the parameters move: the callback enters
``sampler.measure(step, optimizer, batch=...)`` there (θ_t is snapshot) and leaves it at
``on_train_batch_end`` (the step is taken: the line along θ_{t+1} − θ_t is measured), exactly as a
plain loop would wrap ``optimizer.step()``. ``step`` is ``trainer.global_step`` (optimizer steps
done before this one), the direction batch is the batch ``training_step`` saw. The measured
loss must be the loss ``training_step`` differentiates (the sampler's ``loss``), with the same
batch: gradient accumulation over several batches is refused, since its direction is not one
batch's.
"""

from __future__ import annotations

from typing import Any, Callable

import lightning.pytorch as pl
from torch import Tensor

from losslines.engine import LineSampler


def _default_split(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"LineSamplerCallback: a batch of type {type(batch).__name__} is not (inputs, targets, ...); "
                     "pass split_batch=lambda batch: (inputs, targets)")


class LineSamplerCallback(pl.Callback):
    """Wrap every optimizer step of a Lightning ``Trainer`` with ``sampler.measure`` (see the module
    docstring).

    Args:
        sampler: the ``LineSampler`` (its sink receives the lines).
        split_batch: ``batch -> (inputs, targets)`` (default: the first two items of the batch).
        batch_ids: ``batch -> [B]`` dataset ids of the batch (default: the third item when the batch
            has three or more and it is an integer tensor, else unknown).
    """

    def __init__(self, sampler: LineSampler, *, split_batch: Callable[[Any], tuple[Any, Any]] | None = None,
                 batch_ids: Callable[[Any], Any] | None = None):
        self.sampler = sampler
        self._split = split_batch or _default_split
        self._ids = batch_ids
        self._batch: Any = None
        self._block = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(f"LineSamplerCallback: accumulate_grad_batches={trainer.accumulate_grad_batches}; a line "
                             "follows the step of one batch, so use accumulate_grad_batches=1")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch = batch

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps the torch one
        inputs, targets = self._split(self._batch)
        block = self.sampler.measure(trainer.global_step, optimizer, batch=(inputs, targets),
                                     batch_ids=self._batch_ids(self._batch), epoch=trainer.current_epoch)
        block.__enter__()  # θ_t is snapshot; the optimizer moves the parameters after this hook
        self._block = block

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        block, self._block = self._block, None
        if block is not None:
            block.__exit__(None, None, None)  # the step was taken: measure the line

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        block, self._block = self._block, None
        if block is not None:
            try:
                block.__exit__(type(exception), exception, exception.__traceback__)  # no line for a failed step
            except BaseException:  # noqa: BLE001 - the original exception is the one Lightning raises
                pass

    def _batch_ids(self, batch: Any):
        if self._ids is not None:
            return self._ids(batch)
        if isinstance(batch, (tuple, list)) and len(batch) >= 3 and isinstance(batch[2], Tensor) \
                and not batch[2].is_floating_point():
            return batch[2]
        return None
