"""Metric ``batch_size``: batch size versus learning rate from per-sample losses (Fig. 7, claim 3).

Per line, random sub- and super-batches are drawn (seeded by line, so blocks do not matter) and
their slopes at 0 compared with the direction batch's own (:mod:`losslines.analysis.batchsize`).
Needs ``sample_loss_batch``; super-batches also need ``sample_loss_train`` and, to keep the
direction batch's samples out of them, ``batch_ids`` with the training sample ids.

Per-sample slopes are the exact ones the store keeps (``sample_slope0_*``, forward-mode jvp,
store format 2) wherever a line has them; elsewhere (imported or format 1 stores) the grid
stencil of :mod:`losslines.analysis.slopes` estimates them. Lines of each kind are counted, and
where both exist the stencil's error against the exact slope is measured and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.batchsize import (
    BatchStudy,
    batch_slopes,
    default_batch_sizes,
    draw_sample_batches,
    expected_ratio,
    super_batch_pool,
)
from losslines.analysis.metric import Block, FigureSpec, Metric, MetricResult, Parts, Plan, ReportPart, Setup, Stage
from losslines.analysis.slopes import SlopeStencil, slope_stencil
from losslines.analysis.summary_stats import distribution, fmt, json_number

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult

NO_SAMPLE_TRAIN = ("per-sample training losses ('sample_loss_train') absent: no random-batch bands, "
                   "no super-batches, no per-sample consistency check")


@dataclass(frozen=True)
class StudyPlan:
    """Parameters fixed before the pass.

    Attributes:
        sizes: batch sizes b; ``n_batch``: n_B.
        pool: ``[P]`` training-split indices super-batches draw from, or None: per line, every
            training sample outside that line's batch ids.
        sample_ids: ``[N]`` dataset ids of the training split.
        lr: ``[L]`` the store's learning rate (NaN where unknown).
        stencil: the slope estimator applied per sample.
    """

    sizes: tuple[int, ...]
    n_batch: int
    pool: np.ndarray | None
    sample_ids: np.ndarray
    lr: np.ndarray
    stencil: SlopeStencil


class BatchSizeStudyMetric(Metric):
    """Slopes of random sub-/super-batches against the direction batch's, and the SGD steps they imply."""

    name = "batch_size"
    stage = Stage.SAMPLES
    reads = ("sample_loss_batch", "sample_loss_train", "batch_ids", "sample_slope0_batch", "sample_slope0_train")
    requires = ("sample_loss_batch",)

    def plan(self, setup: Setup) -> Plan:
        source, options = setup.source, setup.options
        has_b, has_t = source.has("sample_loss_batch"), source.has("sample_loss_train")
        skipped, notes = [], []
        if not has_b:
            skipped.append("batch-size study (Fig. 7): the store has no per-sample direction-batch losses "
                           "('sample_loss_batch')")
        if not has_t:
            skipped.append(NO_SAMPLE_TRAIN)
        if not has_b:
            return Plan(setup, run=False, skipped=tuple(skipped))
        n_b = source.shape("sample_loss_batch")[-1]
        n_t = source.shape("sample_loss_train")[-1] if has_t else 0
        pool = np.arange(n_t)
        if has_t:
            if source.has("batch_ids") and source.sample_ids("train").size == n_t:
                pool = None  # per line: exclude that line's batch ids
            else:
                notes.append("no batch_ids/sample ids: super-batches may repeat direction-batch samples")
        # Super-batches add training samples outside the line's own batch: with batch ids known,
        # up to n_B of the n_t measured samples may be excluded, so only n_t - n_B are sure to exist.
        available = n_b + (max(n_t - n_b, 0) if pool is None else n_t)
        if options.batch_sizes is not None:
            sizes = tuple(options.batch_sizes)
        else:
            sizes = tuple(b for b in default_batch_sizes(n_b, n_t) if b <= available)
            dropped = [b for b in default_batch_sizes(n_b, n_t) if b > available]
            if dropped:
                skipped.append(f"batch sizes {dropped}: more than the {available} samples a super-batch "
                               "is sure to have")
        too_big = [b for b in sizes if b > available]
        if too_big:
            raise ValueError(f"batch sizes {too_big} exceed the {available} samples a super-batch can be drawn "
                             "from (direction batch + training samples outside it); choose smaller ones")
        if not has_t and any(b > n_b for b in sizes):
            sizes = tuple(b for b in sizes if b <= n_b)
            skipped.append("super-batches: no per-sample training losses")
        lr = source.read("lr", setup.lines).astype(np.float64) if source.has("lr") \
            else np.full(len(setup.lines), np.nan)
        params = StudyPlan(sizes, n_b, pool, source.sample_ids("train"), lr,
                           slope_stencil(setup.position, options.slope_half_points))
        reads = ("sample_loss_batch",) + (("sample_loss_train",) if has_t else ()) + \
            (("batch_ids",) if pool is None else ()) + \
            tuple(f"sample_slope0_{s}" for s, has in (("batch", has_b), ("train", has_t))
                  if has and source.has(f"sample_slope0_{s}"))
        return Plan(setup, reads=reads, skipped=tuple(skipped), notes=tuple(notes), params=params)

    def block(self, plan: Plan, block: Block) -> Parts:
        p: StudyPlan = plan.params
        options = plan.setup.options
        batch, train = block.arrays["sample_loss_batch"], block.arrays.get("sample_loss_train")
        exact_b, exact_t = block.arrays.get("sample_slope0_batch"), block.arrays.get("sample_slope0_train")
        slopes, own, exact, error = [], [], [], []
        for r, line in enumerate(block.lines):
            d_b = p.stencil.apply(batch[r], axis=0)
            d_t = p.stencil.apply(train[r], axis=0) if train is not None else None
            # the exact slopes where this line has them for every sample the study uses
            use = exact_b is not None and _complete(exact_b[r], d_b) and \
                (d_t is None or (exact_t is not None and _complete(exact_t[r], d_t)))
            error.append(np.nan)
            if use:
                x_b = exact_b[r].astype(np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    error[-1] = abs(np.nanmean(d_b) - np.nanmean(x_b)) / abs(np.nanmean(x_b))
                d_b, d_t = x_b, (exact_t[r].astype(np.float64) if d_t is not None else None)
            pool = p.pool if p.pool is not None else super_batch_pool(p.sample_ids, block.arrays["batch_ids"][r])
            rng = np.random.default_rng([options.seed, int(line)])
            slopes.append(batch_slopes(d_b, d_t, draw_sample_batches(p.n_batch, pool, p.sizes, options.n_draws, rng)))
            own.append(float(d_b.mean()))
            exact.append(use)
        parts = {"slopes": np.stack(slopes), "own": np.asarray(own, dtype=np.float64),
                 "exact": np.asarray(exact, dtype=bool), "stencil_error": np.asarray(error, dtype=np.float64)}
        if p.pool is None:
            parts["ids_known"] = (block.arrays["batch_ids"] >= 0).any(axis=1)
        return parts

    def finish(self, plan: Plan, parts: Parts) -> MetricResult:
        p: StudyPlan = plan.params
        notes = ()
        if p.pool is None and not parts["ids_known"].any():
            notes = ("batch_ids are unknown (-1, e.g. an imported store): super-batches may repeat "
                     "direction-batch samples",)
        s, sizes = parts["slopes"], np.asarray(p.sizes)
        exact = parts["exact"]
        stencil = (f"least-squares parabola through the {p.stencil.index.size} grid points nearest s = 0, "
                   f"applied per sample (exact for quadratics; bias {p.stencil.bias_per_cubic:.3g}·c for a cubic "
                   f"term c s³; noise gain {p.stencil.noise_gain:.3g} per unit of per-point rounding)")
        exact_text = "the exact per-sample slopes at 0 the store keeps (forward-mode jvp, sample_slope0_*)"
        stenciled = int((~exact & _measured(s)).sum())
        if exact.any() and not stenciled:
            method = exact_text
        elif not exact.any():
            method = stencil
        else:
            method = f"{exact_text} on {int(exact.sum())} lines; on the other {stenciled}, the {stencil}"
        study = BatchStudy(
            batch_sizes=sizes, n_batch=p.n_batch, expected_ratio=expected_ratio(sizes, p.n_batch),
            slopes=s, batch_slope=parts["own"], sgd_steps=-p.lr[:, None] * s.mean(axis=2), method=method,
            exact=exact, stencil_error=parts["stencil_error"],
        )
        return MetricResult(value=study, notes=notes)

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        st: BatchStudy = self.output(analysis).value
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = st.slopes / st.batch_slope[:, None, None]
        exact = st.exact if st.exact is not None else np.zeros(st.batch_slope.shape, dtype=bool)
        error = st.stencil_error if st.stencil_error is not None else np.full(st.batch_slope.shape, np.nan)
        return {"batch_size": {
            "n_batch": st.n_batch, "method": st.method,
            "lines_with_exact_slopes": int(exact.sum()),
            "lines_with_stencil_slopes": int((~exact & _measured(st.slopes)).sum()),
            "stencil_relative_error": distribution(error[np.isfinite(error)]),
            "sizes": {str(int(b)): {"expected_ratio": json_number(st.expected_ratio[j]),
                                    "measured_ratio": distribution(ratio[:, j, :]),
                                    "sgd_step": distribution(st.sgd_steps[:, j])}
                      for j, b in enumerate(st.batch_sizes)}}}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        b = summary["batch_size"]
        lines = ["", "## Batch size versus learning rate", "", f"Direction batch n_B = {b['n_batch']}. "
                 f"Slopes: {b['method']}."]
        err = b.get("stencil_relative_error") or {}
        if err.get("n"):
            lines.append(f"On the {err['n']} lines with exact slopes, the grid stencil would have been off by "
                         f"{fmt(100 * err['median'])} % (median; q25 {fmt(100 * err['q25'])} %, q75 "
                         f"{fmt(100 * err['q75'])} %) in the direction batch's slope.")
        lines += ["", "| b | expected ratio | measured ratio median [q25, q75] | median SGD step |", "|---|---|---|---|"]
        for size, v in b["sizes"].items():
            mr = v["measured_ratio"]
            lines.append(f"| {size} | {fmt(v['expected_ratio'])} | {fmt(mr['median'])} "
                         f"[{fmt(mr['q25'])}, {fmt(mr['q75'])}] | {fmt(v['sgd_step']['median'])} |")
        return ReportPart(section=tuple(lines))

    def figures(self, analysis: AnalysisResult) -> tuple[FigureSpec, ...]:
        from losslines.analysis.figures_metrics import batchsize_figure

        return (FigureSpec("batch size versus learning rate (Fig. 7)", "batch_size", batchsize_figure),)


def _measured(slopes: np.ndarray) -> np.ndarray:
    """``[L, S, D]`` -> ``[L]``: lines with any finite slope (not those the analysis left out as
    non-finite, which reach the metric as NaN)."""
    return np.isfinite(slopes).any(axis=(1, 2))


def _complete(exact: np.ndarray, estimate: np.ndarray) -> bool:
    """Does ``exact`` hold a finite slope for every sample the grid ``estimate`` has one for (and
    any at all)? (Padded batch slots are NaN in both.)"""
    finite = np.isfinite(estimate)
    return bool(np.isfinite(exact).any() and np.isfinite(exact[finite]).all())
