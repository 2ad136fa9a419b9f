"""Reduced evaluation (``measure.nodes = "chebyshev"``, issue 13 item 3): forwards saved and errors, per line.

Trains the run a config describes and, at each scheduled step, measures the same line (same θ_t,
same SGD direction, same data) twice: densely and reduced. Per line it reports the sample-point
evaluations (forwards of one sample at one point) of each, whether the reduced line was kept or
fell back to dense, the error the reduced line *estimated* at its check points, and its *true*
error against the dense line over every grid point (the mean loss of each split, and the
per-sample losses relative to ``max(|ℓ_i|, L)``). Accuracies are not compared (a reduced line
stores them only where it evaluated them).

    OMP_NUM_THREADS=1 python bench/chebyshev_savings.py configs/quickstart.toml
    OMP_NUM_THREADS=1 python bench/chebyshev_savings.py configs/paper_resnet20_sgd.toml --steps 21 --every 10 \\
        --set data.name=synthetic ... --json bench/results/chebyshev_resnet20.json

``--set`` takes the config overrides of ``losslines run``; ``--nodes``/``--checks`` the reduced
settings (defaults: the config's). Nothing is written but the optional JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from losslines.engine.chebyshev import relative_error
from losslines.engine.directions import Direction
from losslines.engine.evaluator import LineEvaluator
from losslines.runner.config import apply_overrides, load_config
from losslines.runner.parts import build_parts, build_sampler

_COUNT = {"points": 0, "evals": 0}
_measure = LineEvaluator.measure


def _counted(self, direction, positions, **kwargs):
    _COUNT["points"] += len(positions)
    _COUNT["evals"] += len(positions) * self.n_samples
    return _measure(self, direction, positions, **kwargs)


def _measured(sampler, step, direction, theta, buffers, batch):
    before = dict(_COUNT)
    t0 = time.perf_counter()
    record = sampler.measure_direction(step, direction, theta=theta, buffers=buffers, batch=batch, trained_bn="batch")
    return record, _COUNT["evals"] - before["evals"], _COUNT["points"] - before["points"], time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--steps", type=int, help="training steps (default: the config's)")
    p.add_argument("--every", type=int, help="a line every N steps (default: the config's measure.every)")
    p.add_argument("--nodes", type=int, help="measure.chebyshev_nodes")
    p.add_argument("--checks", type=int, help="measure.check_points")
    p.add_argument("--json", help="write the per-line figures here")
    args = p.parse_args(argv)
    extra = list(args.overrides) + ["measure.nodes=chebyshev", "device=cpu"]
    if args.steps:
        extra.append(f"train.steps={args.steps}")
    if args.every:
        extra.append(f"measure.every={args.every}")
    if args.nodes:
        extra.append(f"measure.chebyshev_nodes={args.nodes}")
    if args.checks:
        extra.append(f"measure.check_points={args.checks}")
    cfg = load_config(args.config, extra)
    LineEvaluator.measure = _counted
    parts = build_parts(cfg)
    reduced = build_sampler(parts, None)
    dense = build_sampler(dataclasses.replace(parts, cfg=dataclasses.replace(
        cfg, measure=dataclasses.replace(cfg.measure, nodes="dense"))), None)
    model, m, t = parts.model, cfg.measure, cfg.train
    opt = torch.optim.SGD(model.parameters(), lr=t.lr)
    rows = []
    print(f"{cfg.name}: {parts.grid.n_core} core points, {m.chebyshev_nodes} nodes + {m.check_points} checks, "
          f"bounds {m.max_interpolation_error:g} / {m.max_sample_interpolation_error:g}, "
          f"per-sample kept: {list(m.sample_losses)}", flush=True)
    for step in range(t.steps):
        b = parts.order.batch(step)
        xb, yb = b.inputs, b.targets
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        if parts.schedule.should_measure(step):
            theta = {k: v.detach().clone() for k, v in model.named_parameters()}
            buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
            grads = {k: v.grad.detach().clone() for k, v in model.named_parameters()}
            norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())))
            direction = Direction(vector={k: -t.lr * g for k, g in grads.items()}, update_step=t.lr * norm,
                                  direction_norm=norm, lr=t.lr)
            ref, dense_evals, dense_points, dense_s = _measured(dense, step, direction, theta, buffers, (xb, yb))
            red, red_evals, red_points, red_s = _measured(reduced, step, direction, theta, buffers, (xb, yb))
            row = {"step": step, "kept": bool(red.interpolated), "dense_evals": dense_evals, "reduced_evals": red_evals,
                   "dense_points": dense_points, "reduced_points": red_points, "dense_s": dense_s, "reduced_s": red_s}
            for split in ref.splits:
                ok = np.isfinite(ref[split].loss)
                row[f"est_{split}"] = red[split].interpolation_error
                row[f"est_sample_{split}"] = red[split].sample_interpolation_error
                row[f"true_{split}"] = relative_error(red[split].loss[ok], ref[split].loss[ok])
                row[f"true_sample_{split}"] = relative_error(red[split].sample_loss[ok], ref[split].sample_loss[ok],
                                                             ref[split].loss[ok][:, None])
            rows.append(row)
            print(f"step {step:5d} {'kept ' if row['kept'] else 'DENSE'} points {red_points:4d} vs {dense_points:4d}  "
                  + "  ".join(f"{s}: est {row[f'est_{s}']:.1e}/{row[f'est_sample_{s}']:.1e} "
                              f"true {row[f'true_{s}']:.1e}/{row[f'true_sample_{s}']:.1e}" for s in ref.splits),
                  flush=True)
        opt.step()
    kept = [r for r in rows if r["kept"]]
    dense_total = sum(r["dense_evals"] for r in rows)
    red_total = sum(r["reduced_evals"] for r in rows)
    summary = {
        "config": args.config, "overrides": extra, "lines": len(rows), "kept": len(kept),
        "fell_back": len(rows) - len(kept),
        "forwards_ratio_all_lines": dense_total / red_total if red_total else None,
        "forwards_ratio_kept_lines": (sum(r["dense_evals"] for r in kept) / sum(r["reduced_evals"] for r in kept))
        if kept else None,
        "max_true_error_kept": max((r[f"true_{s}"] for r in kept for s in ("train", "val", "batch") if f"true_{s}" in r),
                                   default=None),
        "max_true_sample_error_kept": max((r[f"true_sample_{s}"] for r in kept for s in ("train", "val", "batch")
                                           if f"true_sample_{s}" in r), default=None),
        "wall_dense_s": sum(r["dense_s"] for r in rows), "wall_reduced_s": sum(r["reduced_s"] for r in rows),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "lines": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
