"""Achieved FLOP/s and model FLOPs utilisation (MFU) of the engine benchmark's methods.

Every method computes the same useful work: ``K · N`` sample forwards of the model. Its FLOPs
are counted once, with ``torch.utils.flop_counter.FlopCounterMode``, on one forward of a
BatchNorm group (matrix products and convolutions; element-wise operations, BatchNorm and the
loss are not counted, as is usual for MFU), divided by the group size. A method's achieved
FLOP/s is ``K · N · flops_per_sample / seconds``; its MFU that over the peak of a plain
``torch.matmul`` of two ``n × n`` float32 matrices timed on the same device, with the same
threads, in the same run (the best of a few calls): a peak this machine reaches, not the
datasheet's. On CUDA the matmul and the convolutions run with torch's TF32 settings as they are
(both recorded), so the peak and the work use the same arithmetic.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["forward_flops_per_sample", "matmul_peak", "mfu_table"]


def forward_flops_per_sample(model: nn.Module, inputs: Tensor, *, train_bn: bool = True) -> float:
    """FLOPs of one sample's forward: those of a forward of ``inputs`` ``[B, ...]`` over ``B``.

    Runs on a deep copy (a train-mode forward updates BatchNorm's running statistics).
    """
    ref = copy.deepcopy(model).train(train_bn)
    device = next(ref.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        ref(inputs.to(device))
    return counter.get_total_flops() / inputs.shape[0]


def matmul_peak(device: torch.device, *, n: int | None = None, repeats: int = 5) -> dict:
    """FLOP/s of the fastest of ``repeats`` ``n × n`` float32 matmuls (after one warm-up).

    Args:
        device: where to time it.
        n: the matrix size (default 2048 on CPU, 4096 on CUDA, where 2048 is over in ~0.1 ms).

    Returns:
        ``{"flops_per_second", "n", "dtype", "seconds", "threads" | "tf32"}``.
    """
    n = n or (4096 if device.type == "cuda" else 2048)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    once()  # warm-up: allocator, BLAS threads, cuBLAS handle
    best = min(once() for _ in range(repeats))
    out = {"flops_per_second": 2 * n**3 / best, "n": n, "dtype": "float32", "seconds": best}
    if device.type == "cuda":
        out["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    else:
        out["threads"] = torch.get_num_threads()
    return out


def mfu_table(seconds: dict[str, float], *, evaluations: int, flops_per_sample: float,
              peak_flops_per_second: float) -> dict[str, dict[str, float]]:
    """``{method: {"flops_per_second", "mfu"}}`` for methods that each did ``evaluations`` sample forwards.

    Args:
        seconds: ``{method: seconds}`` of one measurement (``K · N`` sample-point evaluations).
        evaluations: ``K · N``.
        flops_per_sample: :func:`forward_flops_per_sample`.
        peak_flops_per_second: :func:`matmul_peak`'s ``flops_per_second``.
    """
    out = {}
    for method, s in seconds.items():
        achieved = evaluations * flops_per_sample / s
        out[method] = {"flops_per_second": achieved, "mfu": achieved / peak_flops_per_second}
    return out
