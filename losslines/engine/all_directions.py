"""The paper's "all directions" mode (Fig. 8): lines along M mini-batch directions from one θ_t.

At a chosen training step, before the optimizer moves, losslines draws M mini-batches of the
training set (with its own seeded generator, so the training run's data order and random state
are untouched), computes each batch's gradient g_m at θ_t and measures the line along
u_m = −λ·g_m exactly as a training line is measured (same grid, splits, BatchNorm semantics,
slopes, per-sample losses). The M records form one ``DirectionsRecord``, which a store keeps
in its ``directions/`` group (stacked along a ``direction`` dimension). The question it answers: how much do the full-batch
lines, their minima and s_opt/‖g‖ depend on which batch defined the direction?

Gradients are taken on copies: ``functional_call`` with fresh leaf copies of θ_t and copies of
the buffers, in the BatchNorm mode the model trains in. The model's parameters, ``.grad``,
buffers, module modes and every global random generator are left exactly as they were.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from losslines import batched
from losslines.engine.directions import Direction, tensor_norm, trainable_parameters
from losslines.engine.rng import preserved_rng
from losslines.losses import get_loss
from losslines.records import DirectionsRecord


def batch_gradient(model: nn.Module, x: Tensor, y: Tensor, *, params: dict[str, Tensor],
                   buffers: dict[str, Tensor], loss: str = "cross_entropy",
                   train_mode: bool = True) -> dict[str, Tensor]:
    """∇θ of the mean loss of one batch at θ = ``params``, without touching ``model``.

    Args:
        model: the network (only read; its flags are restored).
        x, y: ``[B, ...]`` inputs and ``[B]`` integer targets.
        params: θ_t for the trainable parameters (name -> tensor).
        buffers: buffer values; copied, so a train-mode BatchNorm update lands on the copies.
        loss: a registered loss (``losslines.losses``); its ``training_loss`` is differentiated.
        train_mode: evaluate the modules in train mode (BatchNorm batch statistics), as the
            optimizer's gradient was.

    Returns:
        ``{name: gradient}`` over the trainable parameters, detached.
    """
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    copies = {n: b.detach().clone() for n, b in buffers.items()}
    flags = {m: m.training for m in model.modules()}
    try:
        model.train(train_mode)
        with preserved_rng(), torch.enable_grad():
            out = batched.call(model, x, (leaves, copies))
            value = get_loss(loss).training_loss(out, y)
            grads = torch.autograd.grad(value, list(leaves.values()))
    finally:
        for module, flag in flags.items():
            module.training = flag
    return {n: g.detach() for n, g in zip(leaves, grads)}


def draw_direction_batches(n_samples: int, batch_size: int, count: int, seed: int) -> list[Tensor]:
    """``count`` index sets of ``batch_size`` distinct samples each, from a generator of its own.

    Raises:
        ValueError: a batch larger than the training set.
    """
    if batch_size > n_samples:
        raise ValueError(f"batch size {batch_size} exceeds the {n_samples} training samples")
    gen = torch.Generator().manual_seed(int(seed))
    return [torch.randperm(n_samples, generator=gen)[:batch_size] for _ in range(count)]


def measure_all_directions(sampler, step: int, *, epoch: int, lr: float, train: tuple[Tensor, Tensor],
                           train_ids: Tensor, batch_size: int, count: int, seed: int,
                           loss: str = "cross_entropy") -> DirectionsRecord:
    """Measure ``count`` lines from the model's current θ_t along fresh mini-batch SGD directions.

    Args:
        sampler: the run's ``LineSampler`` (its grid, splits, BN semantics and layout are used).
        step, epoch: where in training (the model holds θ_t: call before the optimizer step).
        lr: λ of the replayed SGD directions, ``u_m = −λ·g_m``.
        train: ``(inputs [N, ...], targets [N])`` to draw the batches from.
        train_ids: ``[N]`` stable ids of ``train`` (stored as each direction's ``batch_ids``).
        batch_size: B of each direction batch.
        count: M, the number of directions.
        seed: seed of the batch draws (combine with ``step`` so every position differs).

    Returns:
        A ``DirectionsRecord`` of the M lines (for ``StoreWriter.append_directions``).
    """
    model = sampler.model
    trainable = trainable_parameters(model)
    theta_t = {n: p.detach().clone() for n, p in trainable.items()}
    buffers_t = {n: b.detach().clone() for n, b in model.named_buffers()}
    trained_bn = "batch" if model.training else "running"
    x_all, y_all = train
    records = []
    device = batched.leaves(x_all)[0].device
    for idx in draw_direction_batches(batched.rows(x_all), batch_size, count, seed):
        dev_idx = idx.to(device)
        xb, yb = batched.take(x_all, dev_idx), batched.take(y_all, dev_idx)
        grad = batch_gradient(model, xb, yb, params=theta_t, buffers=buffers_t, loss=loss,
                              train_mode=trained_bn == "batch")
        norm = tensor_norm(grad.values())
        if norm == 0.0:
            raise ValueError(f"a direction batch at step {step} has a zero gradient; no line to measure")
        direction = Direction(vector={n: g.mul(-lr) for n, g in grad.items()}, update_step=lr * norm,
                              direction_norm=norm, lr=lr)
        records.append(sampler.measure_direction(step, direction, theta=theta_t, buffers=buffers_t,
                                                 batch=(xb, yb), batch_ids=train_ids[idx].numpy(),
                                                 epoch=epoch, trained_bn=trained_bn))
    return DirectionsRecord(step=int(step), epoch=int(epoch), lr=float(lr), lines=tuple(records))
