"""``LineSampler``: the hook that measures loss lines inside anyone's training loop.

(docs/design.md, "The measurement" and "Architecture".)

::

    sampler = LineSampler(model, grid=make_grid(), schedule=Schedule.every(),
                          train=(x, y), val=(xv, yv), bn="batch", bn_group=128)
    for step, (xb, yb, ids) in enumerate(loader):
        loss = F.cross_entropy(model(xb), yb); optimizer.zero_grad(); loss.backward()
        with sampler.measure(step, optimizer, batch=(xb, yb), batch_ids=ids, epoch=epoch):
            optimizer.step()           # or, with source = SGDDirection(model, lr): source.step()

On a step off the schedule the block just runs. On a scheduled step the sampler snapshots θ_t
(parameters) and the buffers, runs the block (the training step), takes the step's direction
from the source (``OptimizerStepDirection`` around a torch optimizer, or an ``SGDDirection``
whose ``step()`` ran in the block) and measures at θ_t along û:

* the train and val lines on the grid core plus the extra point ``s = update_step``, with the
  sampler's ``bn`` semantics (groups of ``bn_group``);
* the direction batch on the same points, in the BatchNorm mode it was trained in: if the model
  was in train mode when ``measure`` was entered, train-mode statistics over the batch as one
  group; otherwise running statistics;
* exact slopes at 0 for every split, and enlargement rings while the train line's minimum lies
  on the edge of the measured region (every split is measured on each ring; unmeasured = NaN).

Non-finite values (a diverging run) are measured and emitted as they are, never replaced. A step
whose update u holds NaN or ±inf (or whose ``update_step = ‖u‖`` is not finite) has no direction
û: its line is measured at s = 0 only — θ_t, the same point along any direction — and its other
points, its slopes and its loss at the step taken are NaN (not measured).

It emits one ``losslines.records.LineRecord`` per line into its sink, given at construction: a
``LineSink`` (such as ``losslines.store.StoreSink``, opened with the sampler's ``LineShape`` once
the settings are validated), any callable, or none (records collect in ``sampler.records``).
The model after the block is exactly what the optimizer produced: measuring never touches it.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from losslines import batched
from losslines.engine.chebyshev import line_phase, plan_interval, reconstruct
from losslines.engine.directions import Direction, DirectionSource, SGDDirection, SourceResolver
from losslines.engine.evaluator import LineEvaluator, LineMeasurement
from losslines.engine.grid import Grid
from losslines.engine.modes import norm_layers
from losslines.engine.reduced import ReducedNodes
from losslines.engine.schedule import Schedule
from losslines.engine.strategies import StrategyReport, make_strategy
from losslines.records import (SGD_CHECK_MAX_LOSS, SPLITS, LineRecord, LineShape, LineSink, SplitLine, StepRecord,
                               StepValues, sgd_slope_mismatch)


log = logging.getLogger(__name__)

class LineSampler:
    """Measures a line at every scheduled training step (see the module docstring).

    Args:
        model: the trained model.
        grid: the run's ``Grid``.
        schedule: which steps are measured.
        train: ``(inputs [N, ...], targets [N])``, the fixed measurement subset of the training set.
        val: optional held-out ``(inputs, targets)``.
        bn: ``"batch"`` or ``"running"``, for the train and val lines.
        bn_group: samples per BatchNorm group in ``bn="batch"`` (the training batch size).
        loss: a registered loss name (``losslines.losses``) or a ``Loss`` record.
        sample_losses: splits whose per-sample losses go into the record (default: all measured).
        sink: where records go: a ``LineSink`` (``open(shape)`` is called here, after every
            setting is validated; then ``append(record)`` per line), any callable (called with
            each record), or None (records are kept in ``self.records``).
        strategy, dropout, chunk_size, memory_budget, precision: passed to ``LineEvaluator`` (one
            strategy instance for all splits: ``"auto"`` decides once, on the first line's train
            split; a ``"bf16"`` precision's error is measured once, on the first line's train split).
        reduce, shards: a measurement set sharded over processes (``losslines.runner.distributed``):
            ``shards = {"train": (offset, total), "val": (offset, total)}`` says which samples
            ``train`` / ``val`` are of the whole split, ``reduce`` sums a float64 tensor over the
            processes. Line means, accuracies and slopes are those of the whole split; the
            records' per-sample losses are this process's (``SplitLine.sample_offset``). The
            direction batch is measured whole in every process.
        per_step: also measure every training step cheaply — the loss and exact slope at s = 0
            and the loss at the step taken, per split — into a ``StepRecord`` (``sink.append_step``,
            or ``self.step_records``). On scheduled steps it is taken from the dense line.
        dropout_seed: with ``dropout="fixed"``, the base of the lines' mask seeds: the line of
            step t draws its mask from ``line_dropout_seed(dropout_seed, t)`` (recorded in the
            record); every split and every all-directions line of that step use that seed.
        measure_batch: measure the direction batch (then ``batch=`` is required at measured steps).
        train_ids: ``[N]`` dataset ids of the ``train`` rows. With them, a direction batch whose
            samples are all measured training rows — the same inputs and targets, bit for bit
            (no augmentation) — in a measurement where no sample's loss depends on the others
            (no BatchNorm/InstanceNorm layer, or eval-mode statistics for both the batch and the
            training set; dropout not ``"fixed"``; not sharded) gets its losses gathered from
            the training set's per-sample losses instead of forwards of its own (``batch_gathered``
            counts such lines). Its accuracy is then not measured (NaN; the store keeps none).
        batch_size: slots of the batch arrays (default: the size of the first measured batch;
            smaller batches are padded with NaN losses and id -1); required with a ``LineSink``.
        slope: compute exact slopes at 0.
        check_sgd_slope: for an ``SGDDirection`` with momentum 0 and weight decay 0, require
            ``slope0_batch == -direction_norm`` (``losslines.records.sgd_slope_mismatch``): the built-in check
            that the measured batch loss is the loss that was differentiated.
        nodes: ``"dense"`` (every grid point is evaluated) or a ``ReducedNodes`` (reduced
            evaluation: each interval of the grid at Chebyshev nodes, reconstructed by
            barycentric interpolation, checked at check points, measured densely where the
            error exceeds its bounds; ``engine.reduced``).

    Raises:
        ValueError: bad names/settings (listing valid ones), sample_losses naming absent splits,
            a ``LineSink`` without a known batch size.
    """

    def __init__(self, model: nn.Module, *, grid: Grid, schedule: Schedule, train: tuple[Tensor, Tensor],
                 val: tuple[Tensor, Tensor] | None = None, bn: str = "batch", bn_group: int | None = 128,
                 loss: str = "cross_entropy", sample_losses: Sequence[str] | None = None,
                 sink: LineSink | Callable[[LineRecord], object] | None = None, strategy: str = "loop", dropout: str = "off",
                 chunk_size: int | None = None, memory_budget: int | None = None,
                 measure_batch: bool = True, batch_size: int | None = None, slope: bool = True,
                 check_sgd_slope: bool = True, dropout_seed: int = 0, per_step: bool = False,
                 reduce: Callable[[Tensor], Tensor] | None = None,
                 shards: Mapping[str, tuple[int, int]] | None = None, nodes: str | ReducedNodes = "dense",
                 precision: str = "fp32", train_ids=None):
        if not isinstance(grid, Grid) or not isinstance(schedule, Schedule):
            raise ValueError("grid must be a Grid (make_grid) and schedule a Schedule")
        if not (nodes == "dense" or isinstance(nodes, ReducedNodes)):
            raise ValueError(f"nodes must be 'dense' or a ReducedNodes (reduced evaluation), got {nodes!r}")
        self.reduced = nodes if isinstance(nodes, ReducedNodes) else None
        self.model, self.grid, self.schedule, self.loss = model, grid, schedule, loss
        self.slope, self.check_sgd_slope = slope, check_sgd_slope
        self._sgd_check_skipped = False  # said once per sampler
        self.dropout, self.dropout_seed, self.per_step = dropout, int(dropout_seed), bool(per_step)
        self._eval_kwargs = dict(loss=loss, strategy=make_strategy(strategy), dropout=dropout,
                                 memory_budget=memory_budget, precision=precision)
        group = bn_group if bn == "batch" else None
        self.shards = {split: (int(o), int(t)) for split, (o, t) in (shards or {}).items()}
        unknown = sorted(set(self.shards) - {"train", "val"})
        if unknown or (self.shards and reduce is None):
            raise ValueError(f"shards name splits {unknown} (only train and val are sharded)" if unknown else
                             "shards need reduce: the sum over the processes that hold the other shards")

        def evaluator(split: str, data) -> LineEvaluator:
            total = self.shards.get(split, (0, None))[1]
            return LineEvaluator(model, *data, bn=bn, bn_group=group, chunk_size=chunk_size, n_total=total,
                                 reduce=reduce if split in self.shards else None, **self._eval_kwargs)

        self.bn = bn
        self.train_data = train
        self.train_ids = None if train_ids is None else np.asarray(train_ids, dtype=np.int64).reshape(-1)
        if self.train_ids is not None and self.train_ids.size != batched.rows(train[0]):
            raise ValueError(f"train_ids has {self.train_ids.size} ids for {batched.rows(train[0])} training rows")
        self._train_order = None if self.train_ids is None else np.argsort(self.train_ids, kind="stable")
        self.batch_gathered = 0  # lines whose direction-batch losses were gathered from the training set's
        self.evaluators: dict[str, LineEvaluator] = {"train": evaluator("train", train)}
        if val is not None:
            self.evaluators["val"] = evaluator("val", val)
        self.measure_batch = measure_batch
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        measured = [s for s in SPLITS if s in self.evaluators or (s == "batch" and measure_batch)]
        if sample_losses is None:
            sample_losses = measured
        absent = [s for s in sample_losses if s not in measured]
        if absent:
            raise ValueError(f"sample_losses names {absent} but those splits are not measured; measured: {measured}")
        self.sample_losses = tuple(s for s in SPLITS if s in sample_losses)
        self.records: list[LineRecord] = []
        self.step_records: list[StepRecord] = []
        # what the last measure() emitted: the step's line, or its per-step values off the schedule
        self.last_record: LineRecord | StepRecord | None = None
        self._source = SourceResolver(model)
        if sink is not None and not callable(sink) and not isinstance(sink, LineSink):
            raise ValueError(f"sink must be a LineSink (open, append), a callable or None, got {type(sink).__name__}")
        self._sink = sink
        if per_step and sink is not None and not callable(getattr(sink, "append_step", None)):
            raise ValueError("per_step=True needs a sink with append_step(record) (a store sink has one), or no sink")
        if isinstance(sink, LineSink):
            if self.measure_batch and self.batch_size is None:
                raise ValueError("a LineSink needs the record shape up front: pass batch_size= (the slots of "
                                 "the direction batch) or measure_batch=False")
            sink.open(self.shape)

    # -- public ---------------------------------------------------------------------------------

    @property
    def shape(self) -> LineShape:
        """The ``LineShape`` every record of this sampler has (a store derives its layout from it).

        Raises:
            ValueError: the batch is measured but its size is not known yet (pass batch_size).
        """
        if self.measure_batch and self.batch_size is None:
            raise ValueError("the batch size is not known before the first measured batch; pass batch_size=")
        sizes = {split: ev.n_total for split, ev in self.evaluators.items()}
        if self.measure_batch:
            sizes["batch"] = self.batch_size
        return LineShape(positions=self.grid.positions, n_samples=sizes, sample_losses=self.sample_losses,
                         per_step=self.per_step, interpolation=self.reduced is not None)

    @property
    def sink(self) -> LineSink | Callable[[LineRecord], object] | None:
        """Where records go (given at construction)."""
        return self._sink

    @property
    def strategy_report(self) -> StrategyReport | None:
        """The evaluation strategy in use and, for ``"auto"``, both timings (None until an
        ``"auto"`` sampler has measured its first line); ``.as_attrs()`` for the store."""
        return self._eval_kwargs["strategy"].report

    def should_measure(self, step: int) -> bool:
        """Is a line measured at training step ``step``? (The schedule's answer.)"""
        return self.schedule.should_measure(step)

    @contextmanager
    def measure(self, step: int, source, *, batch: tuple[Tensor, Tensor] | None = None,
                batch_ids=None, epoch: int = 0) -> Iterator[None]:
        """Context manager around one training step (see the module docstring).

        Args:
            step: training step (>= 0), checked against the schedule.
            source: a ``torch.optim.Optimizer`` (wrapped in ``OptimizerStepDirection``) or a
                ``DirectionSource`` such as ``SGDDirection``.
            batch: ``(inputs [B, ...], targets [B])`` of the direction batch.
            batch_ids: ``[B]`` dataset ids of the batch (default: -1, unknown).
            epoch: training epoch, stored with the line.

        After a measured step, ``last_record`` is what it emitted: the ``LineRecord`` of a
        scheduled step, else the per-step ``StepRecord`` (``per_step``).

        Raises:
            ValueError: bad source, missing batch, zero update direction.
            RuntimeError: the plain-SGD slope check failed.
        """
        dense = self.schedule.should_measure(step)
        if not dense and not self.per_step:
            yield
            return
        src = self._source(source)
        if self.measure_batch and batch is None:
            raise ValueError(f"step {step} is measured and measure_batch=True, but no batch= was given")
        trained_bn = "batch" if self.model.training else "running"
        theta_t = src.begin()
        buffers_t = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        try:
            yield
        except BaseException:
            src.abort()
            raise
        direction = src.end()
        if not dense:
            step_record = self._measure_step(step, epoch, direction, theta_t, buffers_t, batch, trained_bn)
            if self.measure_batch:
                self._check_sgd(src, step, step_record.splits["batch"].slope0, step_record.direction_norm,
                                step_record.splits["batch"].loss0)
            self.last_record = step_record
            self._emit_step(step_record)
            return
        record = self._measure_line(step, epoch, direction, theta_t, buffers_t, batch, batch_ids, trained_bn)
        if self.measure_batch:
            self._check_sgd(src, step, record["batch"].slope0, record.direction_norm,
                            record["batch"].loss[self.grid.zero_index])
        self.last_record = record
        self._emit(record)
        if self.per_step:
            self._emit_step(self._step_of(record))

    def measure_direction(self, step: int, direction: Direction, *, theta: dict, buffers: dict,
                          batch: tuple[Tensor, Tensor] | None = None, batch_ids=None, epoch: int = 0,
                          trained_bn: str = "batch", source: DirectionSource | None = None) -> LineRecord:
        """Measure one line from an explicit θ_t along an explicit direction; return its record.

        The building block of ``measure``, of the all-directions mode and of measuring a
        recording: the same grid, splits, BatchNorm semantics, slopes and enlargement rings,
        nothing is emitted to the sink. ``trained_bn`` is the BatchNorm mode of the direction
        batch (``"batch"``: train-mode statistics over the batch as one group). ``source``, the
        direction's source, turns on the plain-SGD slope check of ``measure`` where it applies.

        Raises:
            ValueError: no batch where it is measured. RuntimeError: the plain-SGD check failed.
        """
        if self.measure_batch and batch is None:
            raise ValueError(f"step {step}: measure_batch=True needs the direction batch (batch=)")
        record = self._measure_line(step, epoch, direction, theta, buffers, batch, batch_ids, trained_bn)
        if source is not None and self.measure_batch:
            self._check_sgd(source, step, record["batch"].slope0, record.direction_norm,
                            record["batch"].loss[self.grid.zero_index])
        return record

    # -- internals ------------------------------------------------------------------------------

    def _emit_step(self, record: StepRecord) -> None:
        if self._sink is None:
            self.step_records.append(record)
        else:
            self._sink.append_step(record)

    def _measure_step(self, step: int, epoch: int, direction: Direction, theta_t: dict, buffers_t: dict,
                      batch, trained_bn: str) -> StepRecord:
        """The per-step values off the schedule: two points (0 and the step) and the slope."""
        evaluators = dict(self.evaluators)
        if self.measure_batch:
            evaluators["batch"] = self._batch_evaluator(batch, trained_bn)
        seed = line_dropout_seed(self.dropout_seed, step) if self.dropout == "fixed" else None
        values = {}
        along, points = direction.vector, [0.0, direction.update_step]
        if not _finite(direction):  # no direction: s = 0 only (see the module docstring)
            along, points = _anywhere(direction), [0.0]
        for split, ev in evaluators.items():
            m = ev.measure(along, points, slope=len(points) == 2, params=theta_t, buffers=buffers_t,
                           dropout_seed=seed)
            values[split] = StepValues(loss0=float(m.loss[0]), accuracy0=float(m.accuracy[0]), slope0=float(m.slope0),
                                       loss_at_update=float(m.loss[1]) if len(points) == 2 else float("nan"))
        return StepRecord(step=int(step), epoch=int(epoch), lr=float(direction.lr),
                          direction_norm=float(direction.direction_norm), update_step=float(direction.update_step),
                          splits=values)

    def _step_of(self, record: LineRecord) -> StepRecord:
        """The per-step values of a dense line (s = 0 is on every grid)."""
        zero = self.grid.zero_index
        values = {split: StepValues(loss0=float(line.loss[zero]), accuracy0=float(line.accuracy[zero]),
                                    slope0=float(line.slope0), loss_at_update=float(line.loss_at_update))
                  for split, line in record.splits.items()}
        return StepRecord(step=record.step, epoch=record.epoch, lr=record.lr, direction_norm=record.direction_norm,
                          update_step=record.update_step, splits=values)

    def _emit(self, record: LineRecord) -> None:
        if self._sink is None:
            self.records.append(record)
        elif isinstance(self._sink, LineSink):
            self._sink.append(record)
        else:
            self._sink(record)

    def _batch_evaluator(self, batch, trained_bn: str) -> LineEvaluator:
        xb, yb = batch
        n = batched.rows(xb)
        if self.batch_size is None:
            self.batch_size = n
        if n > self.batch_size:
            raise ValueError(f"batch of {n} samples exceeds batch_size={self.batch_size} slots")
        return LineEvaluator(self.model, xb, yb, bn=trained_bn, bn_group=n if trained_bn == "batch" else None,
                             **self._eval_kwargs)

    def _measure_line(self, step: int, epoch: int, direction: Direction, theta_t: dict, buffers_t: dict,
                      batch, batch_ids, trained_bn: str) -> LineRecord:
        evaluators = dict(self.evaluators)
        rows = self._batch_rows(batch, batch_ids, trained_bn) if self.measure_batch else None
        if self.measure_batch and rows is None:
            evaluators["batch"] = self._batch_evaluator(batch, trained_bn)
        gather = (lambda out: _with_gathered_batch(out, rows)) if rows is not None else (lambda out: out)
        seed = line_dropout_seed(self.dropout_seed, step) if self.dropout == "fixed" else None
        kwargs = dict(params=theta_t, buffers=buffers_t, dropout_seed=seed)
        if not _finite(direction):
            return self._record(step, epoch, direction, gather(self._origin_only(evaluators, direction, kwargs)),
                                batch_ids, seed)
        if self.reduced is not None:
            out, errors = self._measure_reduced(evaluators, direction, kwargs, step)
            if rows is not None:  # the batch's values are training samples' own: their per-sample error bounds them
                errors["batch"] = (errors["train"][1], errors["train"][1])
            if self.reduced.accepts(errors, self.sample_losses):
                return self._record(step, epoch, direction, gather(out), batch_ids, seed, errors, interpolated=True)
            log.info("step %d: interpolation error %s above the bound; the line is measured densely", step,
                     self.reduced.describe(errors))
            return self._record(step, epoch, direction, gather(self._measure_dense(evaluators, direction, kwargs)),
                                batch_ids, seed, errors, interpolated=False)
        return self._record(step, epoch, direction, gather(self._measure_dense(evaluators, direction, kwargs)),
                            batch_ids, seed)

    def _batch_rows(self, batch, batch_ids, trained_bn: str) -> np.ndarray | None:
        """The training rows holding the direction batch's samples when its losses can be gathered
        from theirs (see ``train_ids``), else None (the batch is measured by its own forwards)."""
        if self.train_ids is None or batch_ids is None or batch is None or self.shards or self.dropout == "fixed":
            return None
        if norm_layers(self.model) and not (trained_bn == "running" and self.bn == "running"):
            return None  # a sample's loss depends on its batch's statistics
        ids = np.asarray(batch_ids.cpu() if isinstance(batch_ids, Tensor) else batch_ids, dtype=np.int64).reshape(-1)
        order = self._train_order
        at = np.searchsorted(self.train_ids, ids, sorter=order)
        at = np.minimum(at, order.size - 1)
        rows = order[at]
        xb, yb = batch
        if ids.size != batched.rows(xb) or not np.array_equal(self.train_ids[rows], ids):
            return None
        index = torch.as_tensor(rows, device=batched.leaves(self.train_data[0])[0].device)
        tx, ty = (batched.take(t, index) for t in self.train_data)
        if not (_same(tx, xb) and _same(ty, yb)):  # e.g. an augmented batch: not the measured samples
            return None
        if self.batch_size is None:
            self.batch_size = ids.size
        if ids.size > self.batch_size:
            raise ValueError(f"batch of {ids.size} samples exceeds batch_size={self.batch_size} slots")
        if not self.batch_gathered:
            log.info("the direction batch's samples are measured training samples and no sample's loss depends on "
                     "the others: its losses are gathered from the training set's, without forwards of their own")
        self.batch_gathered += 1
        return rows

    def _measure_dense(self, evaluators: dict[str, LineEvaluator], direction: Direction,
                       kwargs: dict) -> dict[str, "_LineArrays"]:
        """Every point of the core (and the step taken), then rings while the minimum is on the edge."""
        grid, positions = self.grid, self.grid.positions
        core = grid.ring_indices(0)
        points = np.append(positions[core], direction.update_step)
        out = {}
        for split, ev in evaluators.items():
            m = ev.measure(direction.vector, points, slope=self.slope, **kwargs)
            out[split] = _LineArrays.empty(grid.n_points, ev.n_samples, m)
            out[split].fill(core, m, upto=core.size)
        n_rings = 0
        while n_rings < grid.max_enlargements and self._min_on_edge(out["train"].loss, n_rings):
            n_rings += 1
            ring = grid.ring_indices(n_rings)
            for split, ev in evaluators.items():
                out[split].fill(ring, ev.measure(direction.vector, positions[ring], slope=False, **kwargs))
        return out

    def _measure_reduced(self, evaluators: dict[str, LineEvaluator], direction: Direction, kwargs: dict,
                         step: int) -> tuple[dict[str, "_LineArrays"], dict[str, tuple[float, float]]]:
        """The reduced line: each interval (the core; each side of a ring) at its Chebyshev nodes
        and check points, reconstructed on the grid (``engine.chebyshev``); the step taken and the
        slope at 0 exactly as in the dense line. Returns the arrays and, per split, the largest
        (mean-loss, per-sample) errors over the intervals."""
        grid, positions, nodes = self.grid, self.grid.positions, self.reduced
        phase = line_phase(step)
        errors = {split: (0.0, 0.0) for split in evaluators}
        out: dict[str, _LineArrays] = {}

        def measure(plans, extra, slope):
            points = np.concatenate([p.points for p in plans] + [extra])
            for split, ev in evaluators.items():
                m = ev.measure(direction.vector, points, slope=slope, **kwargs)
                if split not in out:
                    out[split] = _LineArrays.empty(grid.n_points, ev.n_samples, m)
                start = 0
                for plan in plans:
                    stop = start + plan.points.size
                    r = reconstruct(plan, m.loss[start:stop], m.sample_loss[start:stop], m.accuracy[start:stop])
                    out[split].set(plan.indices, r)
                    errors[split] = (max(errors[split][0], r.error), max(errors[split][1], r.sample_error))
                    start = stop

        measure([plan_interval(positions, grid.ring_indices(0), nodes.n_nodes, nodes.n_checks, phase)],
                np.array([direction.update_step]), self.slope)
        n_rings = 0
        while n_rings < grid.max_enlargements and self._min_on_edge(out["train"].loss, n_rings):
            n_rings += 1
            ring = grid.ring_indices(n_rings)
            sides = (ring[ring < grid.zero_index], ring[ring > grid.zero_index])
            measure([plan_interval(positions, side, nodes.n_nodes, nodes.n_checks, phase) for side in sides],
                    np.zeros(0), False)
        return out, errors

    def _origin_only(self, evaluators: dict[str, LineEvaluator], direction: Direction,
                     kwargs: dict) -> dict[str, "_LineArrays"]:
        """The line of a step whose update is not finite: s = 0 measured, the rest NaN (not measured)."""
        zero = np.array([self.grid.zero_index])
        out = {}
        for split, ev in evaluators.items():
            m = ev.measure(_anywhere(direction), [0.0], slope=False, **kwargs)
            out[split] = _LineArrays.empty(self.grid.n_points, ev.n_samples, m)
            out[split].loss_at_update = float("nan")  # no step was taken along a direction
            out[split].fill(zero, m)
        return out

    def _min_on_edge(self, loss: np.ndarray, n_rings: int) -> bool:
        mask = self.grid.measured_mask(n_rings)
        idx = np.flatnonzero(mask)
        if not np.isfinite(loss[idx]).any():  # a diverged line has no minimum to follow
            return False
        best = idx[int(np.nanargmin(np.where(np.isfinite(loss[idx]), loss[idx], np.nan)))]
        return best in self.grid.edge_indices(n_rings)

    def _record(self, step: int, epoch: int, direction: Direction, out: dict, batch_ids,
                dropout_seed: int | None, errors: Mapping[str, tuple[float, float]] | None = None,
                interpolated: bool | None = None) -> LineRecord:
        splits = {}
        errors = errors or {}
        for split, arr in out.items():
            sample_loss = sample_slope0 = None
            if split in self.sample_losses:
                sample_loss, sample_slope0 = arr.sample_loss, arr.sample_slope0
                if split == "batch":  # a short last batch: NaN in the unused slots
                    sample_loss, sample_slope0 = _pad(sample_loss, self.batch_size), _pad(sample_slope0, self.batch_size)
            splits[split] = SplitLine(loss=arr.loss, accuracy=arr.accuracy, loss_at_update=arr.loss_at_update,
                                      slope0=arr.slope0, sample_loss=sample_loss, sample_slope0=sample_slope0,
                                      sample_offset=self.shards.get(split, (0, 0))[0],
                                      interpolation_error=errors.get(split, (float("nan"),) * 2)[0],
                                      sample_interpolation_error=errors.get(split, (float("nan"),) * 2)[1])
        ids = self._batch_ids(batch_ids, out["batch"].sample_loss.shape[1]) if self.measure_batch else None
        return LineRecord(step=int(step), epoch=int(epoch), lr=float(direction.lr),
                          direction_norm=float(direction.direction_norm), update_step=float(direction.update_step),
                          splits=splits, batch_ids=ids, dropout_seed=dropout_seed, interpolated=interpolated)

    def _batch_ids(self, batch_ids, n: int) -> np.ndarray:
        ids = np.full(self.batch_size, -1, dtype=np.int64)
        if batch_ids is not None:
            given = np.asarray(batch_ids.cpu() if isinstance(batch_ids, Tensor) else batch_ids, dtype=np.int64)
            if given.shape != (n,):
                raise ValueError(f"batch_ids must have shape ({n},) like the batch, got {given.shape}")
            ids[:n] = given
        return ids

    def _check_sgd(self, src: DirectionSource, step: int, slope: float, norm: float, loss0: float) -> None:
        if not (self.check_sgd_slope and self.slope and isinstance(src, SGDDirection)
                and src.momentum == 0 and src.weight_decay == 0):
            return
        if not abs(loss0) <= SGD_CHECK_MAX_LOSS:  # diverged (or non-finite): float32 cannot confirm the identity
            if not self._sgd_check_skipped:
                log.warning("step %d: batch loss %.3g at s = 0; the plain-SGD slope check is not applied to "
                            "lines beyond %.0g nats (float32 rounding of a diverged model's logits)", step, loss0,
                            SGD_CHECK_MAX_LOSS)
                self._sgd_check_skipped = True
            return
        if sgd_slope_mismatch(slope, norm):
            raise RuntimeError(
                f"plain-SGD check failed at step {step}: slope0_batch = {slope:.6g} but "
                f"-‖g‖ = {-norm:.6g}; the measured batch loss is not the loss that was differentiated "
                "(dropout or other randomness in training, a different loss or regulariser, gradient "
                "accumulation, a different BatchNorm mode). Pass check_sgd_slope=False if intended."
            )


def line_dropout_seed(base: int, step: int) -> int:
    """The dropout-mask seed of the line of training step ``step`` (``dropout="fixed"``)."""
    return int(base) * 1_000_033 + int(step)


def _finite(direction: Direction) -> bool:
    """Is there a direction û: ``update_step`` and every entry of u finite? (λ·buf can overflow
    the model's dtype while λ·‖buf‖, accumulated in float64, does not.)"""
    vector = direction.vector.values()
    return math.isfinite(direction.update_step) and all(bool(torch.isfinite(u).all()) for u in vector)


def _anywhere(direction: Direction) -> dict[str, Tensor]:
    """A finite stand-in for a non-finite update, to evaluate s = 0 only: ``fl(θ_t + 0·û) = θ_t``
    along any finite direction, so the values at s = 0 are θ_t's own."""
    return {name: torch.ones_like(u) for name, u in direction.vector.items()}


def _with_gathered_batch(out: dict[str, "_LineArrays"], rows: np.ndarray) -> dict[str, "_LineArrays"]:
    """``out`` with the direction batch's arrays gathered from the training set's rows ``rows``."""
    return {**out, "batch": out["train"].gather(rows)}


def _same(a, b) -> bool:
    """Two tensors, or tuple/dict structures of them, equal in shape, dtype and every value."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b.to(a.device)))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return False


def _pad(values: np.ndarray, slots: int) -> np.ndarray:
    """``[..., n]`` → ``[..., slots]`` (same dtype) with NaN in the unused slots."""
    out = np.full(values.shape[:-1] + (slots,), np.nan, dtype=values.dtype)
    out[..., : values.shape[-1]] = values
    return out


class _LineArrays:
    """The full-grid arrays of one split of one line, NaN where not measured."""

    def __init__(self, loss, accuracy, sample_loss, loss_at_update, slope0, sample_slope0, sample_at_update):
        self.loss, self.accuracy, self.sample_loss = loss, accuracy, sample_loss
        self.loss_at_update, self.slope0, self.sample_slope0 = loss_at_update, slope0, sample_slope0
        self.sample_at_update = sample_at_update

    @classmethod
    def empty(cls, n_points: int, n_samples: int, first: LineMeasurement) -> "_LineArrays":
        return cls(np.full(n_points, np.nan), np.full(n_points, np.nan),
                   np.full((n_points, n_samples), np.nan, dtype=np.float32),
                   float(first.loss[-1]), first.slope0, first.sample_slope0,
                   np.asarray(first.sample_loss[-1], dtype=np.float64))

    def gather(self, rows: np.ndarray) -> "_LineArrays":
        """The arrays of the samples ``rows`` alone: means in float64 of their per-sample values
        (accuracy not measured: NaN)."""
        sample = self.sample_loss[:, rows].copy()
        with np.errstate(invalid="ignore"):
            loss = sample.astype(np.float64).mean(axis=1)
        slopes = np.asarray(self.sample_slope0, dtype=np.float64)[rows]
        at_update = self.sample_at_update[rows]
        return _LineArrays(loss, np.full_like(self.accuracy, np.nan), sample, float(at_update.mean()),
                           float(slopes.mean()), slopes, at_update)

    def fill(self, where: np.ndarray, m: LineMeasurement, upto: int | None = None) -> None:
        """Copy the first ``upto`` points of ``m`` (default: all) to grid indices ``where``."""
        k = m.loss.size if upto is None else upto
        self.loss[where] = m.loss[:k]
        self.accuracy[where] = m.accuracy[:k]
        self.sample_loss[where] = m.sample_loss[:k].astype(np.float32)

    def set(self, where: np.ndarray, r) -> None:
        """Copy an interval's reconstruction (``engine.chebyshev.Reconstruction``) to grid indices ``where``."""
        self.loss[where] = r.loss
        self.accuracy[where] = r.accuracy
        with np.errstate(over="ignore"):  # beyond float32: inf, as a measured value would be
            self.sample_loss[where] = r.sample_loss.astype(np.float32)
