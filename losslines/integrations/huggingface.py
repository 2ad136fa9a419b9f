"""Lines measured inside a HuggingFace ``Trainer`` run: a ``TrainerCallback`` around each
optimizer step.

::

    sampler = LineSampler(model, grid=make_grid(0.01, 0.5), schedule=Schedule.every(50),
                          train=(inputs, targets), loss="token_cross_entropy", bn="running", batch_size=8)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[LineSamplerCallback(sampler, split_batch=causal_lm_batch)])

The Trainer calls ``on_pre_optimizer_step`` after the backward pass (and gradient clipping) and
``on_optimizer_step`` right after ``optimizer.step()``: the callback enters
``sampler.measure(step, optimizer, batch=...)`` in the first (θ_t is snapshot) and leaves it in
the second (the line along θ_{t+1} − θ_t is measured). ``step`` is ``state.global_step``. The
Trainer does not hand its batch to callbacks, so the callback keeps the keyword arguments of the
model's last training forward (a forward pre-hook) and ``split_batch`` turns them into
``(inputs, targets)`` for the sampler's loss — :func:`causal_lm_batch` for a causal language
model trained on ``labels``.

The direction is exactly the step the Trainer took (clipping, scheduler, any optimizer). The
measured loss is the sampler's: ``token_cross_entropy`` is the mean over samples of each
sample's mean token loss, while a HuggingFace causal LM trains on the mean over all tokens of
the batch; the two agree when every sample counts the same number of tokens. (The Trainer
also divides the summed token loss by ``num_items_in_batch``, which it counts over the labels
before the shift — T per sample for T − 1 predicted tokens — so with transformers 5.24 its loss
is (T − 1)/T of the token mean: the measured batch slope at 0 is −‖g‖·T/(T − 1), not −‖g‖,
for plain SGD. The lines are exact either way; only the scale of the Trainer's loss differs.)
Gradient accumulation is refused (a line follows the step of one batch).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from transformers import TrainerCallback

from losslines.engine import LineSampler

IGNORE = -100


def causal_lm_batch(kwargs: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``(inputs, targets)`` of a causal LM forward called with ``labels``: the batched tensors
    among the other keyword arguments, and the labels shifted to the position that predicts them (the next-token target of
    position t is label t + 1; the last position and padding are ignored, -100)."""
    if "labels" not in kwargs:
        raise ValueError("causal_lm_batch: the training forward had no labels=; pass split_batch for your batch")
    labels = kwargs["labels"]
    # the batched tensors (input_ids, attention_mask, ...); not the Trainer's extras such as the
    # 0-d num_items_in_batch
    inputs = {k: v for k, v in kwargs.items() if k != "labels" and isinstance(v, torch.Tensor) and v.dim() >= 1
              and v.shape[0] == labels.shape[0]}
    targets = torch.full_like(labels, IGNORE)
    targets[:, :-1] = labels[:, 1:]
    return inputs, targets


class LineSamplerCallback(TrainerCallback):
    """Wrap every optimizer step of a HuggingFace ``Trainer`` with ``sampler.measure`` (see the
    module docstring).

    Args:
        sampler: the ``LineSampler`` over the Trainer's model (its sink receives the lines).
        split_batch: the keyword arguments of the training forward -> ``(inputs, targets)``
            (default: :func:`causal_lm_batch`).
    """

    def __init__(self, sampler: LineSampler, *, split_batch: Callable[[dict[str, Any]], tuple[Any, Any]] | None = None):
        self.sampler = sampler
        self._split = split_batch or causal_lm_batch
        self._forward: dict[str, Any] | None = None
        self._hook = None
        self._block = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if args.gradient_accumulation_steps != 1:
            raise ValueError(f"LineSamplerCallback: gradient_accumulation_steps={args.gradient_accumulation_steps}; "
                             "a line follows the step of one batch, so use gradient_accumulation_steps=1")
        if model is not self.sampler.model:
            raise ValueError("LineSamplerCallback: the sampler measures another model than the Trainer trains")
        attention = getattr(getattr(model, "config", None), "_attn_implementation", "eager")
        if self.sampler.slope and attention not in ("eager", None):
            raise ValueError(f"LineSamplerCallback: the model uses {attention!r} attention, which has no forward-mode "
                             "AD for the exact slopes; load it with attn_implementation='eager', or measure without "
                             "slopes (LineSampler(slope=False))")

        def keep(module, positional, keywords):
            if module.training and torch.is_grad_enabled():  # the training forward, not an evaluation
                self._forward = dict(keywords)

        self._hook = model.register_forward_pre_hook(keep, with_kwargs=True)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self._forward is None:
            raise ValueError("LineSamplerCallback: no training forward was seen before the optimizer step")
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        inputs, targets = self._split(self._forward)
        block = self.sampler.measure(state.global_step, optimizer, batch=(inputs, targets), epoch=int(state.epoch or 0))
        block.__enter__()  # θ_t is snapshot; optimizer.step() follows
        self._block = block

    def on_optimizer_step(self, args, state, control, **kwargs):
        block, self._block = self._block, None
        if block is not None:
            block.__exit__(None, None, None)  # the step was taken: measure the line
        self._forward = None

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
