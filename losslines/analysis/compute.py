"""Orchestration: read a store block by block and run the pure analyses on it.

Memory stays bounded: the small per-line arrays are read in blocks of lines (each ``[L, K]``
row costs K floats), per-sample arrays in blocks sized by ``options.sample_block_bytes``, and
the line-to-line distances are tiled (:mod:`losslines.analysis.distances`). What is kept for
the whole run is O(L) scalars per metric, the ``[L', W]`` window of the lines compared for
distances, and the ``[L, S, D]`` batch-size slopes.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from losslines.analysis.bands import batch_bands
from losslines.analysis.batchsize import (
    batch_slopes,
    default_batch_sizes,
    draw_sample_batches,
    expected_ratio,
    super_batch_pool,
)
from losslines.analysis.direction_stats import direction_stats
from losslines.analysis.distances import blockwise_distances, shifted_window
from losslines.analysis.minimum import find_minimum
from losslines.analysis.polyfit import fit_polynomials, nonparabolic
from losslines.analysis.results import AnalysisOptions, AnalysisResult, BatchStudy, LineView
from losslines.analysis.slopes import SlopeStencil, slope_stencil
from losslines.analysis.source import LineRange, LineSource
from losslines.analysis.steprules import StepOutcome, judge_step, pal_on_line, rule_key, sgd_step

LINES_PER_BLOCK = 2048
SGD_FACTORS = (0.25, 0.5, 1.0, 2.0)


def compute(
    source: LineSource,
    lines: LineRange,
    options: AnalysisOptions,
    *,
    distance_sink: Callable[[int, int, np.ndarray], None] | None = None,
) -> AnalysisResult:
    """Run every analysis that the store's arrays allow; record what was skipped and why."""
    if not source.has("loss_train"):
        raise ValueError(f"{source.path} has no 'loss_train' (no training measurement); nothing to analyse")
    position = source.position
    res = AnalysisResult(source.path, source.status, source.committed_lines, lines.indices, position, options)
    stencil = slope_stencil(position, options.slope_half_points)
    scalars = {n: source.read(n, lines).astype(np.float64)
               for n in ("lr", "direction_norm", "update_step", "loss_at_update_train",
                         "slope0_train", "slope0_batch", "slope0_val") if source.has(n)}
    res.per_line.update({n: scalars[n] for n in ("lr", "direction_norm", "update_step") if n in scalars})
    res.per_line["step"] = source.read("step", lines).astype(np.int64)
    sgd_lrs = _sgd_lrs(options, scalars.get("lr"), res)
    _per_line_pass(source, lines, options, stencil, scalars, sgd_lrs, res, distance_sink)
    _sample_pass(source, lines, options, stencil, res)
    _line_views(source, lines, options, res)
    _directions(source, options, res)
    return res


def _sgd_lrs(options: AnalysisOptions, lr: np.ndarray | None, res: AnalysisResult) -> tuple[float, ...]:
    if options.sgd_lrs is not None:
        return tuple(options.sgd_lrs)
    finite = lr[np.isfinite(lr)] if lr is not None else np.empty(0)
    if finite.size == 0:
        res.skipped.append("replayed SGD: the store's learning rate is unknown (lr is NaN); pass sgd_lrs / --sgd-lrs")
        return ()
    base = float(np.median(finite))
    return tuple(float(f"{base * f:.6g}") for f in SGD_FACTORS)


def _slope(split: str, block: np.ndarray, exact: np.ndarray | None, stencil: SlopeStencil,
           counts: dict[str, int]) -> np.ndarray:
    """Exact stored slope where finite, the grid stencil elsewhere (counted, never silent)."""
    estimate = stencil.apply(block)
    if exact is None:
        counts["grid"] += block.shape[0]
        return estimate
    use = np.isfinite(exact)
    counts["exact"] += int(use.sum())
    counts["grid"] += int((~use).sum())
    return np.where(use, exact, estimate)


def _per_line_pass(source: LineSource, lines: LineRange, options: AnalysisOptions, stencil: SlopeStencil,
                   scalars: dict[str, np.ndarray], sgd_lrs: tuple[float, ...], res: AnalysisResult,
                   sink: Callable[[int, int, np.ndarray], None] | None) -> None:
    position = source.position
    n = len(lines)
    has_batch = source.has("loss_batch")
    if not has_batch:
        res.skipped.append("PAL on the direction batch: the store has no 'loss_batch'")
    stride = max(1, math.ceil(n / options.max_distance_lines))
    if stride > 1:
        res.notes.append(f"distance matrices use every {stride}-th analysed line ({math.ceil(n / stride)} lines)")
    out: dict[str, list[np.ndarray]] = {}
    coef: dict[int, list[np.ndarray]] = {k: [] for k in options.degrees}
    steps: dict[str, list[np.ndarray]] = {}
    shifted: list[np.ndarray] = []
    counts = {s: {"exact": 0, "grid": 0} for s in ("train", "batch")}
    batch_blocks = source.blocks("loss_batch", lines, rows_per_block=LINES_PER_BLOCK) if has_batch else None
    for off, lt in source.blocks("loss_train", lines, rows_per_block=LINES_PER_BLOCK):
        lt = lt.astype(np.float64)
        sel = slice(off, off + lt.shape[0])
        m = find_minimum(position, lt)
        fits = fit_polynomials(position, lt, degrees=options.degrees, window=options.window)
        flag, kink = nonparabolic(position, lt, fits.mae.get(2, np.full(lt.shape[0], np.nan)),
                                  window=options.window, rel_tol=options.rel_tol)
        block = {"s_opt": m.s_opt, "s_grid": m.s_grid, "s_opt_err": m.s_opt_err, "loss_min": m.loss_min,
                 "at_edge": m.at_edge, "refined": m.refined, "not_parabolic": flag, "kink_position": kink}
        block.update({f"mae{k}": fits.mae[k] for k in options.degrees})
        for k in options.degrees:
            coef[k].append(fits.coef[k])
        slope_train = _slope("train", lt, scalars.get("slope0_train", None)[sel] if "slope0_train" in scalars
                             else None, stencil, counts["train"])
        block["slope0_train"] = slope_train
        rule_steps = {rule_key("taken"): scalars["update_step"][sel] if "update_step" in scalars
                      else np.full(lt.shape[0], np.nan), rule_key("optimum"): m.s_opt}
        for lr in sgd_lrs:
            if "direction_norm" in scalars:
                rule_steps[rule_key("sgd", lr)] = sgd_step(lr, scalars["direction_norm"][sel])
        if batch_blocks is not None:
            _, lb = next(batch_blocks)
            lb = lb.astype(np.float64)
            slope_b = _slope("batch", lb, scalars["slope0_batch"][sel] if "slope0_batch" in scalars else None,
                             stencil, counts["batch"])
            block["slope0_batch"] = slope_b
            for mu in options.pal_mus:
                rule_steps[rule_key("pal", mu)] = pal_on_line(position, lb, slope_b, mu)
        for mu in options.pal_mus:
            rule_steps[rule_key("fbpal", mu)] = pal_on_line(position, lt, slope_train, mu)
        for key, s in rule_steps.items():
            exact = scalars.get("loss_at_update_train") if key == "taken" else None
            o = judge_step(position, lt, m.s_opt, s, loss_at_step=exact[sel] if exact is not None else None)
            for part, v in (("step", o.step), ("improvement", o.improvement), ("distance", o.distance)):
                steps.setdefault(f"{part}|{key}", []).append(v)
        for name, v in block.items():
            out.setdefault(name, []).append(v)
        first = (-off) % stride
        shifted.append(shifted_window(position, lt[first::stride], options.window)[0])
    res.per_line.update({k: np.concatenate(v) for k, v in out.items()})
    res.coef = {k: np.concatenate(v) for k, v in coef.items()}
    keys = [k.split("|", 1)[1] for k in steps if k.startswith("step|")]
    res.rules = {k: StepOutcome(*(np.concatenate(steps[f"{p}|{k}"]) for p in ("step", "improvement", "distance")))
                 for k in keys}
    res.accumulated = {k: {"improvement": np.nancumsum(o.improvement), "distance": np.nancumsum(o.distance)}
                       for k, o in res.rules.items()}
    res.slope_sources = {s: c for s, c in counts.items() if sum(c.values())}
    dn = scalars.get("direction_norm")
    with np.errstate(invalid="ignore", divide="ignore"):
        s_opt = res.per_line["s_opt"]
        res.per_line["ratio"] = s_opt / dn if dn is not None else np.full(n, np.nan)
        res.per_line["overshoot"] = res.per_line["update_step"] / s_opt if "update_step" in res.per_line \
            else np.full(n, np.nan)
    if dn is None:
        res.skipped.append("s_opt / direction_norm: the store has no 'direction_norm'")
    a = np.concatenate(shifted)
    dist_lines = lines.indices[::stride]
    measured = np.isfinite(a).any(axis=1)  # a diverged line has no finite window point
    if not measured.all():
        res.notes.append(f"distance matrices: {int((~measured).sum())} line(s) without a finite window point "
                         f"left out (e.g. line {int(dist_lines[~measured][0])})")
        a, dist_lines = a[measured], dist_lines[measured]
    res.distance_lines = dist_lines
    if a.shape[0] >= 2:
        res.distances = blockwise_distances(a, block=options.distance_block, view_size=options.view_size, sink=sink)
    else:
        res.skipped.append("distance matrices: fewer than two lines analysed")


def _sample_pass(source: LineSource, lines: LineRange, options: AnalysisOptions, stencil: SlopeStencil,
                 res: AnalysisResult) -> None:
    has_b, has_t = source.has("sample_loss_batch"), source.has("sample_loss_train")
    if not has_b:
        res.skipped.append("batch-size study (Fig. 7): the store has no per-sample direction-batch losses "
                           "('sample_loss_batch')")
    if not has_t:
        res.skipped.append("per-sample training losses ('sample_loss_train') absent: no random-batch bands, "
                           "no super-batches, no per-sample consistency check")
        if not has_b:
            return
    n_b = source.shape("sample_loss_batch")[-1] if has_b else 0
    n_t = source.shape("sample_loss_train")[-1] if has_t else 0
    pool = np.arange(n_t)
    if has_b and has_t:
        ids = source.sample_ids("train")
        if source.has("batch_ids") and ids.size == n_t:
            pool = None  # per line: exclude that line's batch ids
        else:
            res.notes.append("no batch_ids/sample ids: super-batches may repeat direction-batch samples")
    # Super-batches add training samples outside the line's own batch: with batch ids known,
    # up to n_B of the n_t measured samples may be excluded, so only n_t - n_B are sure to exist.
    available = n_b + (max(n_t - n_b, 0) if pool is None else n_t)
    if options.batch_sizes is not None:
        sizes = tuple(options.batch_sizes)
    else:
        sizes = tuple(b for b in default_batch_sizes(n_b, n_t) if b <= available)
        dropped = [b for b in default_batch_sizes(n_b, n_t) if b > available]
        if dropped:
            res.skipped.append(f"batch sizes {dropped}: more than the {available} samples a super-batch "
                               "is sure to have")
    if has_b:
        too_big = [b for b in sizes if b > available]
        if too_big:
            raise ValueError(f"batch sizes {too_big} exceed the {available} samples a super-batch can be drawn "
                             "from (direction batch + training samples outside it); choose smaller ones")
        if not has_t and any(b > n_b for b in sizes):
            sizes = tuple(b for b in sizes if b <= n_b)
            res.skipped.append("super-batches: no per-sample training losses")
    present = [s for s, has in (("batch", has_b), ("train", has_t)) if has]
    per_line = sum(source.bytes_per_line(f"sample_loss_{s}") for s in present)
    rows = max(1, options.sample_block_bytes // max(per_line, 1))
    iters = [source.blocks(f"sample_loss_{s}", lines, rows_per_block=rows) for s in present]
    means = {s: source.read(f"loss_{s}", lines) for s in present if source.has(f"loss_{s}")}
    batch_ids = source.read("batch_ids", lines) if pool is None else None
    if batch_ids is not None and not (batch_ids >= 0).any():
        res.notes.append("batch_ids are unknown (-1, e.g. an imported store): super-batches may repeat "
                         "direction-batch samples")
    ids = source.sample_ids("train")
    lr = res.per_line.get("lr", np.full(len(lines), np.nan))
    slopes, own = [], []
    gaps: dict[str, list[float]] = {s: [] for s in present}
    for parts in zip(*iters):
        off = parts[0][0]
        data = {s: block for s, (_, block) in zip(present, parts)}
        for r in range(parts[0][1].shape[0]):
            i = off + r
            for s, block in data.items():  # every stored value is read: mean vs the stored mean
                gap = np.abs(np.mean(block[r], axis=1, dtype=np.float64) - means[s][i]) if s in means else None
                gaps[s].append(float(np.max(gap[np.isfinite(gap)])) if gap is not None and np.isfinite(gap).any()
                               else np.nan)
            if "batch" not in data:
                continue
            d_b = stencil.apply(data["batch"][r], axis=0)
            d_t = stencil.apply(data["train"][r], axis=0) if "train" in data else None
            p = pool if pool is not None else super_batch_pool(ids, batch_ids[i])
            rng = np.random.default_rng([options.seed, int(lines.indices[i])])
            slopes.append(batch_slopes(d_b, d_t, draw_sample_batches(n_b, p, sizes, options.n_draws, rng)))
            own.append(float(d_b.mean()))
    for split, g in gaps.items():
        if g:
            res.per_line[f"sample_mean_gap_{split}"] = np.asarray(g, dtype=np.float64)
    if slopes:
        s = np.stack(slopes)
        res.batch_study = BatchStudy(
            batch_sizes=np.asarray(sizes), n_batch=n_b, expected_ratio=expected_ratio(np.asarray(sizes), n_b),
            slopes=s, batch_slope=np.asarray(own), sgd_steps=-lr[:, None] * s.mean(axis=2),
            method=(f"least-squares parabola through the {stencil.index.size} grid points nearest s = 0, applied "
                    f"per sample (exact for quadratics; bias {stencil.bias_per_cubic:.3g}·c for a cubic term c s³; "
                    f"noise gain {stencil.noise_gain:.3g} per unit of per-point rounding)"),
        )


def _line_views(source: LineSource, lines: LineRange, options: AnalysisOptions, res: AnalysisResult) -> None:
    idx = lines.indices
    if options.plot_lines is not None:
        chosen = []
        for line in options.plot_lines:
            at = np.flatnonzero(idx == line)
            if at.size == 0:
                raise ValueError(f"plot line {line} is not among the analysed lines "
                                 f"({lines.start}:{lines.stop}:{lines.step}, committed {source.committed_lines})")
            chosen.append(int(at[0]))
    else:
        chosen = sorted(set(np.linspace(0, idx.size - 1, min(4, idx.size)).round().astype(int).tolist()))
    n_b = source.shape("sample_loss_batch")[-1] if source.has("sample_loss_batch") else 0
    for at in chosen:
        line = int(idx[at])
        one = LineRange(line, line + 1)
        losses = {s: source.read(f"loss_{s}", one)[0].astype(np.float64)
                  for s in ("train", "batch", "val") if source.has(f"loss_{s}")}
        bands = None
        if source.has("sample_loss_train"):
            per_sample = next(source.blocks("sample_loss_train", one, rows_per_block=1))[1][0]
            size = min(n_b or 128, per_sample.shape[1])
            bands = batch_bands(per_sample, size, max(options.n_draws, 8), np.random.default_rng([options.seed, line, 1]))
        marks = {k: float(o.step[at]) for k, o in res.rules.items() if np.isfinite(o.step[at])}
        res.views.append(LineView(line, int(res.per_line["step"][at]) if "step" in res.per_line else line,
                                  losses, bands, marks))


def _directions(source: LineSource, options: AnalysisOptions, res: AnalysisResult) -> None:
    sub = source.directions()
    if sub is None:
        res.skipped.append("all-directions statistics (Fig. 8): the store has no directions/ group with committed lines")
        return
    every = LineRange(0, sub.committed_lines)
    if not sub.has("loss_train") or not sub.has("direction_norm"):
        res.skipped.append("all-directions statistics: directions/ lacks loss_train or direction_norm")
        return
    res.directions = direction_stats(res.position, sub.read("loss_train", every), sub.read("direction_norm", every),
                                     window=options.window)
    res.direction_steps = sub.read("step", every) if sub.has("step") else every.indices
