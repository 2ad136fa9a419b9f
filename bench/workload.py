"""The engine benchmark's workload and its methods, shared by ``bench_engine.py`` (pytest-benchmark)
and ``gpu_bench.py`` (the GPU check).

A ``Workload`` is one line measurement: a registry model, ``N`` synthetic CIFAR-shaped samples,
``K`` points of the default grid's core (or evenly spaced points for small K), a random direction,
BatchNorm with train-mode statistics over groups of ``batch`` samples (the paper's semantics).
``METHODS`` maps a name to a callable that prepares once (evaluators, copies) and returns the
function to time:

* ``loop``, ``vmap``, ``compiled``: ``LineEvaluator`` with that strategy, the plain-torch loss
  reduction, no slopes (the references compute none); the returned function carries its
  evaluator (``fn.evaluator``), whose ``strategy_report.compile_seconds`` is the time
  ``compiled`` spent compiling (in its warm-up call, never in a timed one);
* ``vmap+triton``: ``vmap`` with the Triton loss-reduction backend (if registered and available);
* ``baseline``: ``references.reference_baseline`` (the original algorithm);
* ``forward_bound``: ``references.forward_bound`` (bare forwards, no loss).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from losslines.engine.evaluator import LineEvaluator
from losslines.engine.grid import make_grid
from losslines.kernels import backend_names, resolve_backend
from losslines.models import build_model

from references import forward_bound, reference_baseline  # noqa: E402  (bench/ is on sys.path)


@dataclass(frozen=True)
class Workload:
    """One line measurement to time.

    Attributes:
        model: the model on ``device`` (float32).
        inputs: ``[N, 3, H, W]`` host inputs; targets ``[N]`` class indices.
        direction: ``{name: tensor}`` on ``device``.
        positions: ``[K]`` float64 step sizes.
        batch: BatchNorm group / DataLoader batch size.
        device: torch device.
        memory_budget: bytes for the engine's chunks (None: the device default).
    """

    model: nn.Module
    inputs: Tensor
    targets: Tensor
    direction: dict[str, Tensor]
    positions: np.ndarray
    batch: int
    device: torch.device
    memory_budget: int | None = None

    @property
    def evaluations(self) -> int:
        """Sample-point evaluations of one measurement: ``K · N``."""
        return len(self.positions) * self.inputs.shape[0]


def grid_points(k: int) -> np.ndarray:
    """``k`` points: the default grid's 167-point core for k = 167, else evenly spaced in [-0.5, 0.5]."""
    grid = make_grid()
    if k == grid.n_points:
        return grid.positions
    return np.linspace(-0.5, 0.5, k)


def make_workload(*, model: str = "resnet20", samples: int = 4000, points: int = 167, batch: int = 128,
                  width: float = 1.0, size: int = 32, device: str = "cpu", seed: int = 0,
                  memory_budget: int | None = None) -> Workload:
    """Build a seeded workload (synthetic CIFAR-shaped data, 10 classes)."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    net = build_model(model, num_classes=10, input_shape=(3, size, size), width=width).to(dev)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(samples, 3, size, size, generator=g)
    y = torch.randint(0, 10, (samples,), generator=g)
    direction = {n: torch.randn(p.shape, generator=g).to(dev) for n, p in net.named_parameters()}
    return Workload(net, x, y, direction, grid_points(points), batch, dev, memory_budget)


def triton_available(w: Workload) -> str | None:
    """None if the Triton loss backend can run on this workload's device, else why not."""
    if "triton" not in backend_names():
        return "no 'triton' loss backend is registered"
    try:
        resolve_backend("triton", torch.zeros(2, 10, device=w.device))
    except ValueError as err:
        return str(err)
    return None


def _engine(strategy: str, backend: str) -> Callable[[Workload], Callable[[], object]]:
    def prepare(w: Workload) -> Callable[[], object]:
        ev = LineEvaluator(w.model, w.inputs, w.targets, bn="batch", bn_group=w.batch, strategy=strategy,
                           backend=backend, memory_budget=w.memory_budget)
        def measure():
            return ev.measure(w.direction, w.positions, slope=False)

        measure.evaluator = ev
        return measure

    return prepare


def _baseline(w: Workload) -> Callable[[], object]:
    return lambda: reference_baseline(w.model, w.inputs, w.targets, w.direction, w.positions, batch_size=w.batch)


def _forward_bound(w: Workload) -> Callable[[], object]:
    return lambda: forward_bound(w.model, w.inputs, len(w.positions), batch_size=w.batch)


METHODS: dict[str, Callable[[Workload], Callable[[], object]]] = {
    "loop": _engine("loop", "torch"),
    "vmap": _engine("vmap", "torch"),
    "compiled": _engine("compiled", "torch"),
    "vmap+triton": _engine("vmap", "triton"),
    "baseline": _baseline,
    "forward_bound": _forward_bound,
}


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call (device synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def ratios(seconds: dict[str, float]) -> dict[str, float]:
    """Throughput ratios of the engine methods to the references (same run): >1 = engine faster
    than the baseline; <=1 always against the forward bound unless the engine beats bare forwards."""
    out = {}
    for engine in ("loop", "vmap", "vmap+triton", "compiled"):
        if engine not in seconds:
            continue
        for ref in ("baseline", "forward_bound"):
            if ref in seconds:
                out[f"{engine}/{ref}"] = seconds[ref] / seconds[engine]
    if "loop" in seconds and "vmap" in seconds:
        out["vmap/loop"] = seconds["loop"] / seconds["vmap"]
    if "loop" in seconds and "compiled" in seconds:
        out["compiled/loop"] = seconds["loop"] / seconds["compiled"]
    return out


def compile_seconds(fn: Callable[[], object]) -> float | None:
    """Seconds a method's strategy spent compiling (None for a method that compiles nothing)."""
    evaluator = getattr(fn, "evaluator", None)
    report = evaluator.strategy_report if evaluator is not None else None
    return report.compile_seconds if report is not None and report.graphs else None
