"""Memory budgets: how many samples and points one forward may hold (docs/design.md, "Architecture").

Chunk sizes come from a budget in bytes (``measure.max_memory``), never from constants:

* **Budget.** ``default_memory_budget(device)``: on CUDA ``CUDA_FREE_FRACTION`` (0.5) of the
  device's free memory at the time of the call; on any other device the fixed
  ``CPU_MEMORY_BUDGET`` (256 MiB).
* **Activations per sample (row).** ``profile_forward`` runs one forward at s = 0 on a few
  probe rows and records, per row, (a) the summed size of every module's output (``sum_bytes``,
  an upper bound on what a forward holds), (b) the largest single module output
  (``max_bytes``) and (c) on CUDA, the measured allocator peak above the memory in use before
  the forward (``peak_bytes``; ``torch.cuda.max_memory_allocated``, whose peak counter this
  resets).
* **Live bytes per row** (``live_bytes_per_row``): the measured CUDA peak when there is one,
  else ``LIVE_FACTOR · max_bytes`` (a no-grad forward keeps a layer's input, its output, a
  residual branch and a workspace alive at a time: 4 of the largest activation).
* **Points per vmapped call** (``vmap_points``)::

      cost(point) = VMAP_FACTOR · rows · live_bytes_per_row      (activations, batched reshapes)
                  + P · e + 16 · P_max                           (θ_t + s·û built per point)
                  + rows · C · e                                 (the outputs kept for the loss)
      points      = clamp(budget // cost(point), 1, K)

  with ``P`` trainable parameters of ``e`` bytes each, ``P_max`` the largest parameter tensor
  (its float64 sum and product exist one tensor at a time) and ``C`` outputs per row.
* **Points per loop call** (``loop_points``): the loop holds one forward at a time, so only the
  stacked outputs count: ``clamp(budget // (4 · rows · C), 1, K)`` (4 bytes per float32 output).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from losslines import batched
from losslines.engine.line import LinePoints

CPU_MEMORY_BUDGET = 256 * 2**20  # bytes, the fixed default off CUDA
CUDA_FREE_FRACTION = 0.5  # default budget on CUDA: this fraction of the free device memory
LIVE_FACTOR = 4  # CPU estimate of the live activations of a no-grad forward, in largest outputs
VMAP_FACTOR = 2  # vmap's batched reshapes (points folded into channels for grouped convolutions)
PROBE_ROWS = 4  # rows of the profiling forward


def default_memory_budget(device: torch.device | str) -> int:
    """Default ``max_memory`` in bytes for ``device`` (see the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return max(1, int(CUDA_FREE_FRACTION * free))
    return CPU_MEMORY_BUDGET


def check_memory_budget(budget) -> int:
    """Return ``budget`` as int bytes, or raise ValueError for anything but a positive integer."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0 or budget != int(budget):
        raise ValueError(f"memory budget must be a positive number of bytes, got {budget!r}")
    return int(budget)


@dataclass(frozen=True)
class ForwardProfile:
    """Memory of one forward, per row (sample).

    Attributes:
        sum_bytes: summed bytes of every module's output per row.
        max_bytes: bytes of the largest single module output per row.
        peak_bytes: measured CUDA allocator peak per row above the memory in use before the
            forward; None off CUDA.
        param_bytes: bytes of the trainable parameters of one point (``P · e``).
        largest_param: elements of the largest trainable parameter tensor (``P_max``).
    """

    sum_bytes: int
    max_bytes: int
    peak_bytes: int | None
    param_bytes: int
    largest_param: int

    @property
    def live_bytes_per_row(self) -> int:
        """Bytes one row keeps alive during a forward: the measured peak, else the estimate."""
        if self.peak_bytes is not None:
            return max(1, self.peak_bytes)
        return max(1, LIVE_FACTOR * self.max_bytes)


def profile_forward(line: LinePoints, x) -> ForwardProfile:
    """Profile one no-grad forward of ``line`` at s = 0 on the first ``PROBE_ROWS`` rows of ``x``.

    Args:
        line: the bound line (the caller has set the measurement modes).
        x: ``[n, ...]`` inputs on the line's device (a tensor or a tuple/dict of tensors).
    """
    probe = batched.take(x, slice(0, min(batched.rows(x), PROBE_ROWS)))
    rows = batched.rows(probe)
    total, largest = [0], [0]

    def hook(_module, _inputs, output):
        for t in pytree.tree_leaves(output):
            if isinstance(t, Tensor):
                size = t.numel() * t.element_size()
                total[0] += size
                largest[0] = max(largest[0], size)

    cuda = line.device.type == "cuda"
    handles = [m.register_forward_hook(hook) for m in line.model.modules()]
    try:
        if cuda:
            torch.cuda.synchronize(line.device)
            torch.cuda.reset_peak_memory_stats(line.device)
            before = torch.cuda.memory_allocated(line.device)
        with torch.no_grad():
            line.forward(0.0, probe)
        peak = None
        if cuda:
            torch.cuda.synchronize(line.device)
            peak = max(0, torch.cuda.max_memory_allocated(line.device) - before) // rows
    finally:
        for h in handles:
            h.remove()
    params = [line.theta[n] for n in line.names]
    return ForwardProfile(
        sum_bytes=max(1, total[0] // rows), max_bytes=max(1, largest[0] // rows), peak_bytes=peak,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        largest_param=max(p.numel() for p in params),
    )


def vmap_points(profile: ForwardProfile, *, rows: int, outputs_per_row: int, element_size: int,
                k_total: int, budget: int) -> int:
    """Points per vmapped call within ``budget`` bytes (formula in the module docstring)."""
    per_point = (VMAP_FACTOR * rows * profile.live_bytes_per_row + profile.param_bytes
                 + 16 * profile.largest_param + rows * outputs_per_row * element_size)
    return int(max(1, min(k_total, budget // max(1, per_point))))


def loop_points(*, rows: int, outputs_per_row: int, k_total: int, budget: int) -> int:
    """Points per loop call: the stacked ``[k, rows, C]`` outputs within ``budget`` bytes."""
    return int(max(1, min(k_total, budget // max(1, 4 * rows * outputs_per_row))))
