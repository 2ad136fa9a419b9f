"""The two references every engine benchmark is compared with, in the same run (docs/design.md, "Where the numbers come from").

* ``reference_baseline``: the original algorithm, re-implemented faithfully — the points one
  after another, the model's parameters moved **in place** from point to point with
  ``p.add_(Δs · û)``, a ``DataLoader`` over mini-batches of ``batch_size`` at every point (data
  on the host, moved to the device per batch), per-sample losses copied to the host per batch.
  It runs on a deep copy, so the caller's model is not touched.
* ``forward_bound``: the bare model forwards a measurement needs — ``K × N`` samples in batches
  of ``batch_size`` resident on the device, ``torch.inference_mode``, no loss — a lower bound on
  the time of any strategy that runs the model once per sample and point.

Throughput is *sample-point evaluations per second*: ``K · N / seconds``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset


def _unit_direction(model: nn.Module, direction: dict[str, Tensor]) -> dict[str, Tensor]:
    norm = torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values()))
    params = dict(model.named_parameters())
    return {n: (d.double() / norm).to(device=params[n].device, dtype=params[n].dtype) for n, d in direction.items()}


def reference_baseline(model: nn.Module, inputs: Tensor, targets: Tensor, direction: dict[str, Tensor],
                       positions, *, batch_size: int = 128, bn: str = "batch") -> np.ndarray:
    """Per-sample losses ``[K, N]`` the way the original code measured them (see module docstring).

    Args:
        model: the model (deep-copied; the copy's parameters are moved in place).
        inputs, targets: ``[N, ...]`` / ``[N]`` host tensors.
        direction: ``{name: tensor}`` over the parameters (normalised here).
        positions: ``[K]`` increasing step sizes along û.
        batch_size: mini-batch size of the DataLoader (and of the BatchNorm statistics).
        bn: ``"batch"`` (train-mode BatchNorm per mini-batch) or ``"running"`` (eval mode).
    """
    ref = copy.deepcopy(model)
    ref.train(bn == "batch")
    device = next(ref.parameters()).device
    uhat = _unit_direction(ref, direction)
    params = dict(ref.named_parameters())
    loader = DataLoader(TensorDataset(inputs.cpu(), targets.cpu()), batch_size=batch_size, shuffle=False)
    out, here = [], 0.0
    with torch.no_grad():
        for s in np.asarray(positions, dtype=np.float64):
            for n, u in uhat.items():  # move from the previous point: rounding accumulates, as in the original
                params[n].add_(float(s - here) * u)
            here = float(s)
            losses = []
            for xb, yb in loader:
                logits = ref(xb.to(device))
                losses.append(F.cross_entropy(logits, yb.to(device), reduction="none").to("cpu", copy=True))
            out.append(torch.cat(losses))
    return torch.stack(out).numpy()


def forward_bound(model: nn.Module, inputs: Tensor, n_points: int, *, batch_size: int = 128,
                  bn: str = "batch") -> None:
    """Run the ``n_points × N`` bare forwards (inputs resident on the model's device)."""
    ref = copy.deepcopy(model)
    ref.train(bn == "batch")
    device = next(ref.parameters()).device
    x = inputs.to(device)
    with torch.inference_mode():
        for _ in range(n_points):
            for start in range(0, x.shape[0], batch_size):
                ref(x[start:start + batch_size])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
