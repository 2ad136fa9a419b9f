"""Evaluation strategies: how the model outputs of a chunk of points are computed (docs/design.md, "Architecture").

A strategy implements one method, ``outputs(line, positions, x) -> [k, n, ...]``: the model
outputs at ``k`` positions for one chunk of inputs, and says how many points one call may take
within a memory budget (``point_chunk``). Chunking over data, the loss reduction, float64
accumulation, slopes and safeguards are inherited from ``LineEvaluator``.

* ``"loop"``: one ``functional_call`` forward per point (fastest on CPU).
* ``"vmap"``: ``torch.func.functional_call`` under ``torch.func.vmap`` over a chunk of step sizes;
  each point's parameters ``fl(θ_t + s·û)`` are built inside the vmapped function from the
  pristine float64 θ_t and û (bit-identical to the loop's points). ``bn="running"``: the
  buffers are shared by all points (read only). ``bn="batch"``: every point gets its own copy of
  the buffers (a batched copy), so the train-mode running-statistics update writes per-point
  copies that are thrown away — the statistics used are those of the batch, the module's and
  the line's buffers are never touched. ``randomness="same"``: a random op (there should be
  none: the evaluator checks determinism) draws the same numbers for every point.
* ``"compiled"``: ``torch.compile`` of a fixed-shape block of ``COMPILED_BLOCK`` points
  (``engine.compiled``): points built inside the compiled function from the pristine θ_t and u
  like the loop's, compiled once per strategy instance (a run shares one) and reused for every
  line; a shorter block of points is padded with its last position; on CUDA
  ``mode="reduce-overhead"`` (CUDA graphs). The seconds spent compiling are in its report
  (``compile_seconds``, ``graphs``). It refuses train-mode dropout (``dropout="fixed"``: compiled
  random numbers are not eager's) and a model torch cannot compile whole (one-line error naming
  the setting; no silent fall-back).
* ``"auto"``: times ``loop`` and ``vmap`` on the first line (``AUTO_POINTS`` points of the first
  data chunk, after one warm-up call each) — and ``compiled`` too when that line, at the faster
  eager speed, takes at least ``AUTO_COMPILE_SECONDS`` (the compilation is not timed as a
  point; ``AutoStrategy``) — requires them to give the same outputs, keeps the fastest, logs the
  choice and the timings (logger ``losslines.engine``) and exposes them as ``report`` (a
  ``StrategyReport``) for the store attributes. One ``AutoStrategy`` instance shared by several
  evaluators decides once, on the first line measured.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.func import vmap
from torch.nn.modules.dropout import _DropoutNd
from torch.utils import _pytree as pytree

from losslines import batched
from losslines.engine.compiled import CompiledPoints
from losslines.engine.line import LinePoints
from losslines.engine.rng import seeded
from losslines.engine.memory import ForwardProfile, loop_points, vmap_points

log = logging.getLogger("losslines.engine")

AUTO_POINTS = 8  # points timed per strategy by "auto"
AUTO_REPEATS = 2  # timed calls per strategy (the fastest counts), after one warm-up call
COMPILED_BLOCK = 1  # points per compiled call of the "compiled" strategy
AUTO_COMPILE_SECONDS = 60.0  # "auto" also times "compiled" when one line takes at least this long (eager)


@dataclass(frozen=True)
class StrategyReport:
    """Which strategy computed the values, and why.

    Attributes:
        requested: the strategy asked for ("loop", "vmap" or "auto").
        chosen: the strategy that computes the outputs ("loop" or "vmap").
        seconds_per_point: ``{strategy: seconds}`` per point of the timed chunk ("auto" only;
            empty otherwise).
        points: points per timed call (0 if nothing was timed).
        rows: samples per timed call (0 if nothing was timed).
        device: device the timing ran on ("" if nothing was timed).
        compile_seconds: wall seconds spent in calls that compiled a graph ("compiled"; 0
            otherwise), not part of ``seconds_per_point``.
        graphs: graphs compiled ("compiled"; 0 otherwise).
        precision: ``"fp32"`` or ``"bf16"`` (the forwards under bfloat16 autocast).
        precision_error: with ``"bf16"``, its error against fp32 on the first measured line
            (``LineEvaluator``): ``line_rel_max`` (max over points of |L_bf16 − L_fp32|/|L_fp32|),
            ``sample_abs_max`` and ``sample_abs_mean`` (per-sample |ℓ_bf16 − ℓ_fp32| in nats),
            ``points``, ``samples``; empty otherwise.
    """

    requested: str
    chosen: str
    seconds_per_point: dict[str, float] = field(default_factory=dict)
    points: int = 0
    rows: int = 0
    device: str = ""
    compile_seconds: float = 0.0
    graphs: int = 0
    precision: str = "fp32"
    precision_error: dict[str, float] = field(default_factory=dict)

    def as_attrs(self) -> dict:
        """JSON-serialisable form for the store attributes."""
        return {"requested": self.requested, "chosen": self.chosen,
                "seconds_per_point": dict(self.seconds_per_point), "points": self.points,
                "rows": self.rows, "device": self.device, "compile_seconds": self.compile_seconds,
                "graphs": self.graphs, "precision": self.precision,
                "precision_error": dict(self.precision_error)}


class Strategy(ABC):
    """Computes model outputs at several points of a line for one chunk of inputs.

    ``reduce`` (set by the evaluator of a measurement sharded over processes) sums a float64
    tensor over the processes; a strategy that decides something at run time (``"auto"``) must
    decide the same in every process. ``precision`` and ``precision_error`` (set by the
    evaluator: ``LineEvaluator(precision=...)``) are reported with it.
    """

    name: ClassVar[str]
    reduce: Callable[[Tensor], Tensor] | None = None
    precision: str = "fp32"
    precision_error: dict[str, float] | None = None

    @abstractmethod
    def outputs(self, line: LinePoints, positions: np.ndarray, x):
        """Model outputs at each position.

        Args:
            line: the bound line ``θ_t + s·û`` (modes and grad mode are set by the caller).
            positions: ``[k]`` float64 distances along û.
            x: ``[n, ...]`` inputs of one data chunk (one BatchNorm group in ``bn="batch"``): a
                tensor or a tuple/dict of tensors (``losslines.batched``).

        Returns:
            ``[k, n, ...]`` outputs, point-major (every tensor of the model's output structure).
        """

    @abstractmethod
    def point_chunk(self, profile: ForwardProfile, *, rows: int, outputs_per_row: int, element_size: int,
                    k_total: int, budget: int) -> int:
        """Points per ``outputs`` call for ``rows`` samples within ``budget`` bytes (``engine.memory``)."""

    def prepare(self, line: LinePoints, positions: np.ndarray, x, chunk: Callable[[str], int],
                rows_total: int | None = None) -> None:
        """Called by the evaluator before each line's values with its first data chunk;
        ``chunk(name)`` is the point chunk of strategy ``name``; ``rows_total`` the samples of the
        whole (possibly sharded) split (None: ``x``'s). Default: nothing to do."""

    @property
    def report(self) -> StrategyReport | None:
        """How the outputs are computed (None while undecided)."""
        return self._with_precision(StrategyReport(requested=self.name, chosen=self.name))

    def _with_precision(self, report: StrategyReport | None) -> StrategyReport | None:
        """``report`` with this strategy's precision fields (the same object if they are already in it)."""
        error = dict(self.precision_error or {})
        if report is None or (report.precision == self.precision and report.precision_error == error):
            return report
        return replace(report, precision=self.precision, precision_error=error)


class LoopStrategy(Strategy):
    """One functional forward per point, points one after another."""

    name = "loop"

    def outputs(self, line: LinePoints, positions: np.ndarray, x):
        return batched.stack([line.forward(float(s), x) for s in positions])

    def point_chunk(self, profile, *, rows, outputs_per_row, element_size, k_total, budget):
        return loop_points(rows=rows, outputs_per_row=outputs_per_row, k_total=k_total, budget=budget)


class VmapStrategy(Strategy):
    """``functional_call`` under ``vmap`` over the points of one call (see the module docstring)."""

    name = "vmap"

    def outputs(self, line: LinePoints, positions: np.ndarray, x):
        k = len(positions)
        s = torch.as_tensor(np.asarray(positions, dtype=np.float64), device=line.device)
        model, names, frozen = line.model, line.names, line.frozen

        def point(s_j: Tensor, buffers: dict[str, Tensor]):
            params = {n: line.point(n, s_j) for n in names}
            params.update(frozen)
            return batched.call(model, x, (params, buffers))

        with seeded(line.seed, line.device):  # dropout="fixed": one mask, shared by every point
            if any(m.training for m in model.modules()):  # train-mode layers may write their buffers
                buffers = {n: b.unsqueeze(0).expand(k, *b.shape).clone() for n, b in line.buffers.items()}
                return vmap(point, in_dims=(0, 0), randomness="same")(s, buffers)
            return vmap(point, in_dims=(0, None), randomness="same")(s, line.buffers)

    def point_chunk(self, profile, *, rows, outputs_per_row, element_size, k_total, budget):
        return vmap_points(profile, rows=rows, outputs_per_row=outputs_per_row, element_size=element_size,
                           k_total=k_total, budget=budget)


class CompiledStrategy(Strategy):
    """``torch.compile`` of a block of ``block`` points, compiled once and reused for every line
    (see the module docstring and ``engine.compiled``).

    Args:
        block: points per compiled call (positions are padded to a multiple of it).
    """

    name = "compiled"

    def __init__(self, block: int = COMPILED_BLOCK):
        if not isinstance(block, (int, np.integer)) or block < 1:
            raise ValueError(f"the compiled strategy needs block >= 1 points per compiled call, got {block!r}")
        self.block = int(block)
        self.reduce: Callable[[Tensor], Tensor] | None = None
        self._compiled: CompiledPoints | None = None

    @property
    def report(self) -> StrategyReport | None:
        graphs, seconds = (self._compiled.graphs, self._compiled.compile_seconds) if self._compiled else (0, 0.0)
        return self._with_precision(StrategyReport(requested=self.name, chosen=self.name,
                                                   compile_seconds=seconds, graphs=graphs))

    def outputs(self, line: LinePoints, positions: np.ndarray, x):
        if any(isinstance(m, _DropoutNd) and m.p > 0 and m.training for m in line.model.modules()):
            raise ValueError("measure.strategy='compiled' cannot measure train-mode dropout (dropout='fixed'): "
                             "compiled random numbers are not eager's; use strategy 'loop' or 'vmap'")
        if self._compiled is None or self._compiled.device != line.device:
            self._compiled = CompiledPoints(line.device, self.block)
        pos = np.asarray(positions, dtype=np.float64)
        k, b = pos.size, self.block
        padded = np.concatenate([pos, np.full(-k % b, pos[-1])])  # fixed shapes: pad with the last point
        c = torch.as_tensor(padded * line.scale, dtype=torch.float64, device=line.device)
        outs = [self._compiled(line, c[i:i + b], x) for i in range(0, padded.size, b)]
        out = _concat(outs)
        return batched.map_tensors(lambda t: t[:k], out) if padded.size != k else out

    def point_chunk(self, profile, *, rows, outputs_per_row, k_total, budget, element_size):
        k = loop_points(rows=rows, outputs_per_row=outputs_per_row, k_total=k_total, budget=budget)
        return k if k == k_total or k < self.block else k - k % self.block


def _concat(structures: list):
    """Point-major structures ``[b_i, n, ...]`` concatenated along dim 0, leaf by leaf."""
    if len(structures) == 1:
        return structures[0]
    flat, spec = zip(*(pytree.tree_flatten(s) for s in structures))
    return pytree.tree_unflatten([torch.cat(column) for column in zip(*flat)], spec[0])


class AutoStrategy(Strategy):
    """Times ``loop`` and ``vmap`` on the first line and delegates to the fastest; also times
    ``compiled`` when one line is long enough to amortise a compilation.

    The rule for ``compiled``: the line's estimated time with the faster eager strategy
    (its seconds per point × the line's points × its data chunks, summed over the processes of a
    sharded measurement) is at least ``compile_after`` seconds. A compilation of ResNet-20 takes
    15–30 s on a 2-core CPU (``bench/``), so the default (60 s) compiles only where compiling
    costs at most about half a line; the compilation's time is reported (``compile_seconds``)
    and is not part of the per-point timing that decides. Train-mode dropout never compiles.

    Args:
        points: points per timed call (at most the line's points and vmap's point chunk).
        repeats: timed calls per strategy after one warm-up call; the fastest counts.
        compile_after: seconds of one line from which ``compiled`` is timed too (None: never).
    """

    name = "auto"

    def __init__(self, points: int = AUTO_POINTS, repeats: int = AUTO_REPEATS,
                 compile_after: float | None = AUTO_COMPILE_SECONDS):
        if points < 1 or repeats < 1:
            raise ValueError(f"auto strategy needs points >= 1 and repeats >= 1, got {points}, {repeats}")
        if compile_after is not None and not compile_after >= 0:
            raise ValueError(f"auto strategy needs compile_after >= 0 seconds or None, got {compile_after!r}")
        self.points, self.repeats, self.compile_after = int(points), int(repeats), compile_after
        self.candidates: dict[str, Strategy] = {"loop": LoopStrategy(), "vmap": VmapStrategy(),
                                                "compiled": CompiledStrategy()}
        self.reduce: Callable[[Tensor], Tensor] | None = None  # set for sharded measurements: one decision for all
        self._chosen: Strategy | None = None
        self._report: StrategyReport | None = None

    @property
    def report(self) -> StrategyReport | None:
        self._report = self._with_precision(self._report)  # one object while nothing changes
        return self._report

    def prepare(self, line: LinePoints, positions: np.ndarray, x, chunk: Callable[[str], int],
                rows_total: int | None = None) -> None:
        if self._chosen is not None:
            return
        k = int(max(1, min(self.points, len(positions), chunk("vmap"))))
        pos = np.asarray(positions, dtype=np.float64)[:k]
        rows = batched.rows(x)
        seconds, outs = self._time(["loop", "vmap"], line, pos, x)
        line_seconds = min(seconds.values()) * len(positions) * -(-(rows_total or rows) // rows)
        dropout = any(isinstance(m, _DropoutNd) and m.p > 0 and m.training for m in line.model.modules())
        if self.compile_after is not None and line_seconds >= self.compile_after and not dropout:
            more, more_outs = self._time(["compiled"], line, pos, x)
            seconds.update(more)
            outs.update(more_outs)
        for name in outs:
            if name != "loop":
                _require_agreement(outs["loop"], outs[name], name)
        chosen = min(seconds, key=seconds.get)
        self._chosen = self.candidates[chosen]
        compiled = self.candidates["compiled"].report if "compiled" in seconds else None
        self._report = StrategyReport(requested="auto", chosen=chosen, seconds_per_point=seconds, points=k,
                                      rows=rows, device=str(line.device),
                                      compile_seconds=compiled.compile_seconds if compiled else 0.0,
                                      graphs=compiled.graphs if compiled else 0)
        log.debug("strategy auto: chose %s (seconds per point over %d points x %d samples on %s: %s)", chosen, k,
                  rows, line.device, ", ".join(f"{n} {s:.3g}" for n, s in seconds.items()))

    def _time(self, names: list[str], line: LinePoints, pos: np.ndarray, x) -> tuple[dict[str, float], dict]:
        """Seconds per point of each named candidate (fastest of ``repeats`` calls after a warm-up
        call; summed over the processes of a sharded measurement) and its outputs."""
        seconds, outs = {}, {}
        with torch.no_grad():
            for name in names:
                strategy = self.candidates[name]
                strategy.outputs(line, pos, x)  # warm-up: allocator, kernels, autotuning, compilation
                best = float("inf")
                for _ in range(self.repeats):
                    _sync(line.device)
                    t0 = time.perf_counter()
                    outs[name] = strategy.outputs(line, pos, x)
                    _sync(line.device)
                    best = min(best, time.perf_counter() - t0)
                seconds[name] = best / len(pos)
        if self.reduce is not None:  # every process of a sharded measurement must take the same strategy
            summed = self.reduce(torch.tensor(list(seconds.values()), dtype=torch.float64, device=line.device))
            seconds = dict(zip(seconds, summed.tolist()))
        return seconds, outs

    def _delegate(self) -> Strategy:
        if self._chosen is None:
            raise RuntimeError("strategy 'auto' has not timed the strategies yet: call prepare() first "
                               "(LineEvaluator.measure does)")
        return self._chosen

    def outputs(self, line: LinePoints, positions: np.ndarray, x):
        return self._delegate().outputs(line, positions, x)

    def point_chunk(self, profile, **kwargs):
        return self._delegate().point_chunk(profile, **kwargs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _require_agreement(a, b, other: str = "vmap") -> None:
    """Loud check that loop and ``other`` computed the same outputs, tensor by tensor (float64: 1e-9,
    else 1e-2 of the largest finite output: reduced-precision kernels, e.g. TF32, differ by
    algorithm; integer outputs exactly; NaN and ±inf, a diverged model's, at the same places)."""
    for u, v in zip(batched.leaves(a), batched.leaves(b)):
        if not u.is_floating_point() or not u.numel():
            gap, allowed = (0.0, 0.0) if torch.equal(u, v) else (float("inf"), 0.0)
        else:
            finite = torch.isfinite(u)
            same_rest = torch.equal(finite, torch.isfinite(v)) and bool(
                ((u == v) | (u.isnan() & v.isnan()))[~finite].all())
            u, v = u[finite], v[finite]
            largest = float(u.abs().max()) if u.numel() else 0.0
            allowed = (1e-9 if u.dtype == torch.float64 else 1e-2) * max(1.0, largest)
            gap = (float((u - v).abs().max()) if u.numel() else 0.0) if same_rest else float("inf")
        if not gap <= allowed:  # also catches NaN
            raise RuntimeError(f"strategies 'loop' and '{other}' disagree on the same points (max |difference| "
                               f"{gap:.3g}, allowed {allowed:.3g}); measure with strategy='loop' and "
                               "report the model")


STRATEGIES: dict[str, type[Strategy]] = {"loop": LoopStrategy, "vmap": VmapStrategy, "compiled": CompiledStrategy,
                                         "auto": AutoStrategy}


def register_strategy(name: str, cls: type[Strategy]) -> None:
    """Add an evaluation strategy under ``name`` (``measure.strategy`` in a config, ``strategy=``
    of the evaluator and sampler); re-registering a name replaces it. The conformance suite
    (tests/engine/test_conformance_strategies.py) runs every registered strategy.

    Raises:
        ValueError: ``cls`` is not a ``Strategy`` subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"register_strategy takes a Strategy subclass, got {cls!r}")
    STRATEGIES[name] = cls


def make_strategy(name: str | Strategy) -> Strategy:
    """Instantiate the strategy registered as ``name`` (a ``Strategy`` instance is returned as is,
    so evaluators can share one ``AutoStrategy`` decision).

    Raises:
        ValueError: unknown name (the message lists the valid names).
    """
    if isinstance(name, Strategy):
        return name
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()
