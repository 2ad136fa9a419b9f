"""Exact loss lines: per-sample losses at many step sizes along one direction (docs/design.md, "The measurement").

For a model with parameters θ_t, a direction u and positions ``s_1..s_K`` (Euclidean distances
along û = u/‖u‖), ``LineEvaluator.measure`` returns every per-sample loss ``ℓ_i(θ_t + s_j·û)``
(``[K, N]``), the mean loss per point ``L(s_j) = (1/N) Σ_i ℓ_i`` accumulated in float64, the
accuracy per point and the exact slope ``L'(0) = dL/ds|_{s=0}`` by forward-mode AD (a jvp through
``functional_call`` with ``torch.autograd.forward_ad``: ``torch.func.jvp`` refuses the in-place
running-statistics update inside a train-mode BatchNorm).

Semantics (the measurement changes nothing):

* parameters, buffers (BatchNorm running statistics, ``num_batches_tracked``), ``requires_grad``,
  ``.grad``, every module's ``training`` flag and the global RNG states are the same after a
  measurement as before (``engine.modes``, ``engine.line``).
* ``bn="running"``: eval-mode normalisation; rows are chunked by ``chunk_size`` or by a memory
  budget (the result does not depend on the chunking).
* Points are chunked per strategy call by ``point_chunk`` or by the memory budget
  (``engine.memory``: the loop counts the stacked outputs, vmap each point's activations and
  parameters); the budget defaults to half the free CUDA memory on CUDA, 256 MiB elsewhere.
* ``bn="batch"``: train-mode normalisation over fixed groups of ``bn_group`` consecutive samples
  of the given data, which **must be given** (there is no silent default: the paper's value is
  the training batch size). If ``N`` is not a multiple of ``bn_group`` the last group holds the
  remaining ``N mod bn_group`` samples and is normalised with their statistics (as a
  ``DataLoader`` without ``drop_last`` would). The mean is over samples, not over groups.
* ``dropout="off"`` (default): dropout is the identity; ``"error"``: active dropout is an error;
  ``"fixed"``: train-mode dropout with one mask per line, drawn from the line's ``dropout_seed``
  (the same at every point; the mask of a sample depends on the seed and on the data chunk it
  is evaluated in, which is fixed for the evaluator).
* Safeguard: on its first measurement an evaluator evaluates s = 0 twice on the first chunk and
  requires bit-identical outputs (hidden randomness, e.g. functional dropout or noise layers,
  is an error).
* ``precision="bf16"`` (opt-in; default ``"fp32"``): the value forwards run under bfloat16
  autocast (``torch.autocast``; CPUs with AVX-512 BF16 and CUDA GPUs run it natively), their
  outputs are cast back to float32 before the loss, and means are accumulated in float64 as
  always; the exact slopes stay float32 forward-mode passes (the plain-SGD check compares them
  with ‖g‖). Never silent: on the first line the strategy measures, the line is also measured
  in fp32 and the error of bf16 against it (``PrecisionError``) is logged and reported with the
  strategy (``StrategyReport.precision_error``, the store's ``strategy_report``).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from losslines import batched
from losslines.engine.line import LinePoints
from losslines.engine.memory import (CPU_MEMORY_BUDGET, ForwardProfile, check_memory_budget, default_memory_budget,
                                     profile_forward)
from losslines.engine.modes import check_bn, measurement_modes, validate_model
from losslines.engine.rng import preserved_rng
from losslines.engine.strategies import Strategy, StrategyReport, make_strategy
from losslines.losses import Loss, get_loss, reduce_loss

DEFAULT_MEMORY_BUDGET = CPU_MEMORY_BUDGET  # bytes; the default off CUDA (memory_budget=None picks per device)
PRECISIONS = ("fp32", "bf16")  # the forwards' precision: float32 as the model is, or bfloat16 autocast

log = logging.getLogger("losslines.engine")


@dataclass(frozen=True)
class LineMeasurement:
    """One measured line.

    Attributes:
        positions: ``[K]`` float64, distances along the unit direction û.
        loss: ``[K]`` float64, mean loss over the N samples (nats).
        sample_loss: ``[K, N]`` per-sample losses (float32; float64 if the model runs in float64).
        accuracy: ``[K]`` float64 fraction of correct predictions (NaN for regression targets).
        slope0: exact ``dL/ds`` at s = 0 (nats per unit s); NaN if not computed.
        sample_slope0: ``[N]`` float64 exact ``dℓ_i/ds`` at s = 0 (in ``bn="batch"`` each
            sample's loss depends on its whole group); NaN if not computed.
        direction_length: ‖direction‖ as given (before normalisation).
        params_norm: ‖θ_t‖ over the trainable parameters.
        bn, bn_group, loss: the settings the line was measured with.
        strategy: the strategy that computed the values ("loop" or "vmap"; for "auto", the one it
            chose — ``LineEvaluator.strategy_report`` says why).
        loss_name: the loss measured.
        dropout_seed: the seed of the line's dropout mask (``dropout="fixed"``), else None.
    """

    positions: np.ndarray
    loss: np.ndarray
    sample_loss: np.ndarray
    accuracy: np.ndarray
    slope0: float
    sample_slope0: np.ndarray
    direction_length: float
    params_norm: float
    bn: str
    bn_group: int | None
    strategy: str
    loss_name: str
    dropout_seed: int | None = None

    @property
    def n_samples(self) -> int:
        return self.sample_loss.shape[1]


def _check_positions(positions) -> np.ndarray:
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 1 or pos.size == 0:
        raise ValueError(f"positions must be a non-empty 1-D array, got shape {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or inf")
    return pos


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


class LineEvaluator:
    """Measures lines of one model on one fixed data set (one split).

    Args:
        model: the model; never modified.
        inputs: ``[N, ...]`` inputs (floating inputs are cast to the model's dtype); moved once
            to the model's device.
        targets: ``[N]`` integer class indices (``"cross_entropy"``; or ``"mse"`` against one-hot
            targets, with accuracy) or ``[N]``/``[N, C]`` floats (``"mse"`` regression, accuracy NaN).
        bn: ``"running"`` or ``"batch"`` (see the module docstring).
        bn_group: samples per normalisation group; required for ``bn="batch"``.
        loss: a registered loss name (``losslines.losses``: "cross_entropy", "mse", ...) or a
            ``Loss`` record; its target check runs here.
        strategy: evaluation strategy name (``engine.strategies``: "loop", "vmap", "compiled", "auto") or a
            ``Strategy`` instance (evaluators sharing one ``AutoStrategy`` share its decision).
        dropout: ``"off"``, ``"error"`` or ``"fixed"`` (see the module docstring).
        chunk_size: rows per forward in ``bn="running"`` (default: from ``memory_budget``).
        memory_budget: bytes one chunk may hold (rows in ``bn="running"``, points per strategy
            call); None: ``engine.memory.default_memory_budget`` of the model's device.
        point_chunk: points per strategy call (default: from ``memory_budget``).
        backend: loss-reduction backend (``losslines.kernels``).
        self_check: evaluate s = 0 twice on the first measurement and require equal outputs.
        reduce: for a measurement set sharded over processes: ``reduce(t) -> t`` sums a float64
            tensor over them (an all-reduce); the line's sums, counts and slope are reduced, the
            per-sample values stay this process's. None: this process holds the whole set.
        n_total: samples of the whole (sharded) set; default: this process's.
        memory_format: ``"auto"`` (channels-last for the ``loop`` strategy when the inputs are
            images ``[N, C, H, W]`` and the model has 4-D weights), ``"channels_last"`` or
            ``"contiguous"``. Channels-last
            inputs and convolution weights make convolutions ~1.7x faster on CPU (ResNet-20);
            the values are the same function, rounded by other kernels.
        precision: ``"fp32"`` (default) or ``"bf16"``: the value forwards under bfloat16
            autocast, for a float32 model; its error against fp32 is measured on the first line
            (see the module docstring) and reported with the strategy.

    Raises:
        ValueError: unknown names (listing the valid ones), mismatched data, missing bn_group,
            a model that cannot be measured with these settings.
        NotImplementedError: a strategy that is reserved but not implemented yet.
    """

    def __init__(self, model: nn.Module, inputs: Tensor, targets: Tensor, *, bn: str = "running",
                 bn_group: int | None = None, loss: str = "cross_entropy", strategy: str | Strategy = "loop",
                 dropout: str = "off", chunk_size: int | None = None,
                 memory_budget: int | None = None, backend: str = "auto", self_check: bool = True,
                 point_chunk: int | None = None, memory_format: str = "auto",
                 reduce: Callable[[Tensor], Tensor] | None = None, n_total: int | None = None,
                 precision: str = "fp32"):
        check_bn(bn)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(f"unknown memory_format {memory_format!r}; valid: {', '.join(MEMORY_FORMATS)}")
        self.loss_spec: Loss = get_loss(loss)
        validate_model(model, bn, dropout)
        self.strategy = make_strategy(strategy)
        self.precision = precision
        if bn == "batch":
            if bn_group is None:
                raise ValueError("bn='batch' needs bn_group: the number of samples per BatchNorm group "
                                 "(the paper uses the training batch size, e.g. 128)")
            if chunk_size is not None:
                raise ValueError("chunk_size applies to bn='running'; in bn='batch' the data is chunked by bn_group")
        for name, value in (("bn_group", bn_group), ("chunk_size", chunk_size), ("point_chunk", point_chunk)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        first = next((p for p in model.parameters()), None)
        if first is None:
            raise ValueError("the model has no parameters")
        if precision != "fp32" and first.dtype != torch.float32:
            raise ValueError(f"precision={precision!r} (measure.precision) needs a float32 model (autocast from "
                             f"float32), the model runs in {first.dtype}")
        self.strategy.precision = precision
        memory_budget = default_memory_budget(first.device) if memory_budget is None \
            else check_memory_budget(memory_budget)
        self.model, self.bn, self.loss, self.dropout = model, bn, self.loss_spec.name, dropout
        self.bn_group = int(bn_group) if bn_group is not None else None
        self.backend, self.self_check, self.memory_budget = backend, self_check, memory_budget
        # vmap has no batching rule for the strided copies channels-last needs (slow fallback).
        images = isinstance(inputs, Tensor) and inputs.dim() == 4
        self.channels_last = memory_format == "channels_last" or (
            memory_format == "auto" and self.strategy.name == "loop" and images
            and any(p.dim() == 4 for p in model.parameters()))
        if self.channels_last and (not images or self.strategy.name != "loop"):
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise ValueError("memory_format='channels_last' needs image inputs [N, C, H, W] and the 'loop' "
                             f"strategy, got inputs {shape} and strategy {self.strategy.name!r}")
        self.inputs, self.targets = self._prepare_data(inputs, targets, first)
        self.n_samples = batched.rows(self.inputs)
        self.reduce = reduce
        self.n_total = int(n_total) if n_total is not None else self.n_samples
        if self.n_total < self.n_samples:
            raise ValueError(f"n_total={self.n_total} is below this process's {self.n_samples} samples")
        if reduce is not None:
            self.strategy.reduce = reduce  # "auto" decides from the summed timings of every process
        if bn == "batch" and self.n_samples % self.bn_group == 1 and any(
                isinstance(m, nn.BatchNorm1d) for m in model.modules()):
            raise ValueError(
                f"bn='batch' with bn_group={self.bn_group} leaves a last group of one sample out of "
                f"{self.n_samples}, which train-mode BatchNorm1d cannot normalise; choose a bn_group "
                "(or a number of measured samples) that leaves no single-sample group")
        self._chunk_size = int(chunk_size) if chunk_size is not None else None
        self._point_chunk_size = int(point_chunk) if point_chunk is not None else None
        self._profile: ForwardProfile | None = None
        self._checked = False

    @property
    def strategy_report(self) -> StrategyReport | None:
        """The strategy that computes the values and, for "auto", both timings (None before
        an "auto" evaluator has measured its first line). ``report.as_attrs()`` is JSON."""
        return self.strategy.report

    def _prepare_data(self, inputs, targets, first: Tensor):
        n, n_targets = batched.rows(inputs), batched.rows(targets)
        if n == 0 or n != n_targets:
            raise ValueError(f"inputs ({n}) and targets ({n_targets}) must hold the same, non-zero number of samples")
        x = batched.to_device(inputs, first.device, first.dtype)
        y, self.has_accuracy = self.loss_spec.prepare_targets(targets, first.dtype, first.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = batched.map_tensors(lambda t: t.contiguous(), x)
        return x, batched.map_tensors(lambda t: t.contiguous(), y)

    # -- chunking -------------------------------------------------------------------------------

    def _row_chunks(self, line: LinePoints) -> list[slice]:
        n = self.n_samples
        size = self.bn_group if self.bn == "batch" else (self._chunk_size or self._budget_rows(line))
        return [slice(start, min(start + size, n)) for start in range(0, n, size)]

    def _forward_profile(self, line: LinePoints) -> ForwardProfile:
        """Memory of one forward per row (``engine.memory``), profiled once per evaluator."""
        if self._profile is None:
            self._profile = profile_forward(line, self.inputs)
        return self._profile

    def _budget_rows(self, line: LinePoints) -> int:
        """Rows per chunk such that the summed activations of one forward fit the budget."""
        per_row = self._forward_profile(line).sum_bytes
        self._chunk_size = int(max(1, min(self.n_samples, self.memory_budget // per_row)))
        return self._chunk_size

    def _point_chunk(self, line: LinePoints, rows: int, out_per_row: int, k: int, strategy: Strategy) -> int:
        """Points per strategy call: ``point_chunk`` if given, else the strategy's budget rule."""
        if self._point_chunk_size is not None:
            return min(k, self._point_chunk_size)
        return strategy.point_chunk(self._forward_profile(line), rows=rows, outputs_per_row=out_per_row,
                                    element_size=line.theta[line.names[0]].element_size(), k_total=k,
                                    budget=self.memory_budget)

    # -- measurement ----------------------------------------------------------------------------

    def measure(self, direction, positions, *, params: Mapping[str, Tensor] | None = None,
                buffers: Mapping[str, Tensor] | None = None, slope: bool = True,
                dropout_seed: int | None = None) -> LineMeasurement:
        """Measure the line ``θ_t + s·û`` at ``positions``.

        Args:
            direction: ``{name: tensor}`` over the trainable parameters (missing names = zero) or
                a flat tensor in ``named_parameters()`` order; normalised here (any scale).
            positions: ``[K]`` distances along û (float64).
            params: θ_t for some/all parameters (default: the model's current values).
            buffers: buffer values at θ_t (default: the model's current buffers).
            slope: also compute the exact slopes at s = 0 (one jvp pass over the data).
            dropout_seed: the line's dropout mask seed; required with ``dropout="fixed"``.

        Returns:
            ``LineMeasurement``.

        Raises:
            ValueError: zero/non-finite direction, bad names or shapes, bad positions.
            RuntimeError: the double evaluation of s = 0 disagreed (hidden randomness).
        """
        pos = _check_positions(positions)
        if (self.dropout == "fixed") != (dropout_seed is not None):
            raise ValueError("dropout='fixed' needs the line's mask seed, measure(..., dropout_seed=int); other "
                             f"dropout modes take none (dropout={self.dropout!r}, dropout_seed={dropout_seed!r})")
        line = LinePoints(self.model, direction, params=params, buffers=buffers, channels_last=self.channels_last,
                          seed=dropout_seed)
        with preserved_rng(), measurement_modes(self.model, self.bn, self.dropout):
            chunks = self._row_chunks(line)
            if self.self_check and not self._checked:
                self._double_check(line, chunks[0])
            self._prepare_strategy(line, pos, chunks[0])
            sample_loss, line_sum, correct, counted = self._values(line, pos, chunks, self.precision)
            if self.precision != "fp32" and self.strategy.precision_error is None:
                self._measure_precision_error(line, pos, chunks, sample_loss, line_sum)
            slopes = self._slopes(line, chunks) if slope else None
        n = self.n_total
        slope_sum = slopes.sum() if slopes is not None else None
        if self.reduce is not None:  # one all-reduce of the K-length sums and counts and the slope sum
            k = pos.size
            extra = slope_sum.reshape(1) if slope_sum is not None else line_sum.new_zeros(1)
            totals = self.reduce(torch.cat([line_sum, correct.to(torch.float64), counted.to(torch.float64), extra]))
            line_sum, correct, counted = totals[:k], totals[k:2 * k], totals[2 * k:3 * k]
            slope_sum = totals[3 * k] if slope_sum is not None else None
        with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: NaN
            accuracy = (correct.cpu().numpy() / counted.cpu().numpy()).astype(np.float64) if self.has_accuracy \
                else np.full(pos.size, np.nan)
        if slopes is None:
            slope0, sample_slope0 = float("nan"), np.full(self.n_samples, np.nan)
        else:
            sample_slope0 = slopes.cpu().numpy()
            slope0 = float(slope_sum) / n
        return LineMeasurement(
            positions=pos, loss=line_sum.cpu().numpy() / n, sample_loss=sample_loss.cpu().numpy(),
            accuracy=accuracy, slope0=slope0, sample_slope0=sample_slope0,
            direction_length=line.direction_length, params_norm=line.params_norm, bn=self.bn,
            bn_group=self.bn_group, strategy=self.strategy.report.chosen, loss_name=self.loss,
            dropout_seed=dropout_seed,
        )

    def _double_check(self, line: LinePoints, rows: slice) -> None:
        x = batched.take(self.inputs, rows)
        with torch.no_grad():
            a = line.forward(0.0, x)
            b = line.forward(0.0, x)
        if not batched.equal(a, b):
            raise RuntimeError(
                "evaluating the same point twice gave different outputs: the model's forward is not "
                "deterministic (functional dropout, noise layers, or nondeterministic kernels — try "
                "torch.use_deterministic_algorithms(True)); a loss line needs a deterministic function"
            )
        self._checked = True

    def _prepare_strategy(self, line: LinePoints, pos: np.ndarray, rows: slice) -> None:
        """Let the strategy prepare on the first data chunk ("auto" times its candidates here)."""
        x = batched.take(self.inputs, rows)
        n_out = [0]

        def chunk(name: str) -> int:
            if not n_out[0]:
                with torch.no_grad():
                    # the whole chunk: one row cannot pass a train-mode BatchNorm1d
                    n_out[0] = batched.numel_per_row(line.forward(0.0, x))
            return self._point_chunk(line, batched.rows(x), n_out[0], pos.size, make_strategy(name))

        with _autocast(line.device, self.precision):
            self.strategy.prepare(line, pos, x, chunk, rows_total=self.n_total)

    def _targets_for(self, rows: slice, k: int):
        return batched.repeat_rows(batched.take(self.targets, rows), k)

    def _measure_precision_error(self, line: LinePoints, pos: np.ndarray, chunks: list[slice], sample_loss: Tensor,
                                 line_sum: Tensor) -> None:
        """The reduced precision's error against fp32 on this line, set on the strategy (reported
        with it) and logged: the line measured again in fp32."""
        ref_samples, ref_sum, _, _ = self._values(line, pos, chunks, "fp32")
        error = precision_error(line_sum / self.n_samples, ref_sum / self.n_samples, sample_loss, ref_samples)
        self.strategy.precision_error = error
        log.info("precision %s: error against fp32 on the first line (%d points x %d samples): max relative "
                 "line error %.3g, per-sample max %.3g nats (mean %.3g)", self.precision, pos.size, self.n_samples,
                 error["line_rel_max"], error["sample_abs_max"], error["sample_abs_mean"])

    def _values(self, line: LinePoints, pos: np.ndarray, chunks: list[slice],
                precision: str = "fp32") -> tuple[Tensor, Tensor, Tensor, Tensor]:
        k_total = pos.size
        sample_loss = None
        line_sum = torch.zeros(k_total, dtype=torch.float64, device=line.device)
        correct = torch.zeros(k_total, dtype=torch.int64, device=line.device)
        counted = torch.zeros(k_total, dtype=torch.int64, device=line.device)
        k_step = None
        with torch.no_grad():
            for rows in chunks:
                x = batched.take(self.inputs, rows)
                n = batched.rows(x)
                start = 0
                while start < k_total:
                    # the very first call evaluates one point; its output size fixes the point chunk
                    stop = start + 1 if k_step is None else min(k_total, start + k_step)
                    with _autocast(line.device, precision):
                        out = self.strategy.outputs(line, pos[start:stop], x)
                    if precision != "fp32":  # the loss in the model's dtype, from the reduced outputs
                        out = batched.map_tensors(lambda t: t.to(line.dtype) if t.is_floating_point() else t, out)
                    k = stop - start
                    logits = self._as_logits(out, k, n)
                    red = reduce_loss(logits, self._targets_for(rows, k), loss=self.loss_spec, lines=k,
                                      backend=self.backend)
                    if sample_loss is None:
                        sample_loss = torch.empty(k_total, self.n_samples, dtype=red.sample_loss.dtype,
                                                  device=line.device)
                        per_row = batched.numel_per_row(out) // k  # one point's outputs per sample
                        k_step = self._point_chunk(line, n, per_row, k_total, self.strategy)
                    sample_loss[start:stop, rows] = red.sample_loss.view(k, n)
                    line_sum[start:stop] += red.line_sum
                    correct[start:stop] += red.correct
                    counted[start:stop] += n if red.counted is None else red.counted
                    start = stop
        return sample_loss, line_sum, correct, counted

    def _as_logits(self, out, k: int, n: int):
        """``[k, n, ...]`` outputs (any structure) as the loss's line-major rows ``[k*n, ...]``."""
        return self.loss_spec.as_rows(batched.flatten_points(out, k, n))

    def _slopes(self, line: LinePoints, chunks: list[slice]) -> Tensor:
        """``[N]`` float64 exact ``dℓ_i/ds`` at s = 0, by forward-mode AD per chunk (group): the
        parameters are dual numbers ``(θ_t, u)``, the per-sample tangents ``dℓ_i/dt`` along u,
        scaled by ``1/‖u‖`` in float64."""
        out = torch.empty(self.n_samples, dtype=torch.float64, device=line.device)
        for rows in chunks:
            x, y = batched.take(self.inputs, rows), batched.take(self.targets, rows)
            with forward_ad.dual_level(), _quiet_jit_deprecation():
                outputs = batched.map_tensors(lambda t: t.unsqueeze(0), line.forward_tangent(x))
                logits = self._as_logits(outputs, 1, batched.rows(x))
                self.loss_spec.check(logits, y)
                per_sample, _ = self.loss_spec.reference(logits, y)
                tangent = forward_ad.unpack_dual(per_sample).tangent
            if tangent is None:  # the loss does not depend on the trainable parameters
                tangent = torch.zeros_like(per_sample)
            out[rows] = tangent.detach().to(torch.float64) * line.scale
        return out


def _autocast(device: torch.device, precision: str):
    """bfloat16 autocast on ``device`` for ``precision="bf16"``, else nothing."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def precision_error(loss: Tensor, ref_loss: Tensor, sample_loss: Tensor, ref_sample_loss: Tensor) -> dict[str, float]:
    """Error of a reduced-precision line against its fp32 measurement, over finite values.

    Args:
        loss, ref_loss: ``[K]`` mean losses (nats), reduced precision and fp32.
        sample_loss, ref_sample_loss: ``[K, N]`` per-sample losses (nats).

    Returns:
        ``{"line_rel_max": max_k |L − L_ref|/|L_ref|, "sample_abs_max": max |ℓ − ℓ_ref|,
        "sample_abs_mean": mean |ℓ − ℓ_ref|, "points": K, "samples": N}`` (floats; NaN where
        nothing is finite).
    """
    loss, ref_loss = loss.double().cpu(), ref_loss.double().cpu()
    diff = (sample_loss.double() - ref_sample_loss.double()).abs().cpu()
    rel = ((loss - ref_loss).abs() / ref_loss.abs())
    rel, diff_f = rel[torch.isfinite(rel)], diff[torch.isfinite(diff)]
    nan = float("nan")
    return {"line_rel_max": float(rel.max()) if rel.numel() else nan,
            "sample_abs_max": float(diff_f.max()) if diff_f.numel() else nan,
            "sample_abs_mean": float(diff_f.mean()) if diff_f.numel() else nan,
            "points": int(sample_loss.shape[0]), "samples": int(sample_loss.shape[1])}


@contextmanager
def _quiet_jit_deprecation() -> Iterator[None]:
    """The first forward-mode computation makes torch script its jvp decompositions, which raises
    torch's own deprecation warning for ``torch.jit.script`` — a ``FutureWarning`` in torch 2.14,
    a ``DeprecationWarning`` in 2.11 (seen on CUDA) — silenced here, narrowly: that message only."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=category)
        yield


def measure_line(model: nn.Module, inputs: Tensor, targets: Tensor, direction, positions, *,
                 bn: str = "running", bn_group: int | None = None, loss: str = "cross_entropy",
                 params: Mapping[str, Tensor] | None = None, buffers: Mapping[str, Tensor] | None = None,
                 strategy: str = "loop", slope: bool = True, chunk_size: int | None = None,
                 dropout: str = "off", memory_budget: int | None = None,
                 point_chunk: int | None = None, memory_format: str = "auto",
                 dropout_seed: int | None = None, precision: str = "fp32") -> LineMeasurement:
    """Measure one loss line: ``LineEvaluator(model, inputs, targets, ...).measure(direction, positions)``.

    See ``LineEvaluator`` for the arguments and ``LineMeasurement`` for the result. The slope uses
    the plain-PyTorch loss reference (forward-mode AD), the values the dispatched kernel.
    """
    evaluator = LineEvaluator(model, inputs, targets, bn=bn, bn_group=bn_group, loss=loss, strategy=strategy,
                              dropout=dropout, chunk_size=chunk_size, memory_budget=memory_budget,
                              point_chunk=point_chunk, memory_format=memory_format, precision=precision)
    return evaluator.measure(direction, positions, params=params, buffers=buffers, slope=slope,
                             dropout_seed=dropout_seed)
