"""The store attributes a run writes: its config, the measurement semantics, grid, data, model, runtime, versions.

docs/store-format.md ("Group attributes") is the specification of these keys.
"""

from __future__ import annotations

import platform

import numpy as np
import torch

from losslines._version import __version__
from losslines.engine.modes import active_dropout
from losslines.runner.config import config_to_dict
from losslines.runner.parts import RunParts


def store_attrs(parts: RunParts) -> dict:
    """JSON-ready root attributes of the store of ``parts``' run."""
    import zarr

    cfg, dataset, model, grid = parts.cfg, parts.dataset, parts.model, parts.grid
    return {
        "config": config_to_dict(cfg),
        "semantics": {
            "direction": cfg.measure.direction,
            "bn": cfg.measure.bn,
            "bn_group": cfg.measure.bn_group,
            "loss": cfg.measure.loss,
            "strategy": cfg.measure.strategy,
            "dropout": {"off": "off", "error": "off (active dropout refused)",
                        "fixed": "fixed: train-mode dropout, one mask per line, the same at every point; the line "
                                 "of step t draws it from seed config.seed * 1000033 + t"}[cfg.measure.dropout],
            "accumulation": "float64",
            "slopes": "exact (torch.func.jvp)",
            "position": "distance along the unit update direction",
            "batch_measured_on": "the (augmented) inputs that defined the direction",
            "buffers": "BatchNorm running statistics as the step found them (after step t's training forward)",
            "sgd_slope_check": ("off: training uses dropout, the measurement evaluates it as the identity"
                                if cfg.measure.dropout != "fixed" else
                                "off: training draws a new dropout mask each step, the measurement one per line")
            if active_dropout(model) else "on where it applies (plain SGD without weight decay)",
            "nodes": "dense: every grid point evaluated" if cfg.measure.nodes == "dense" else (
                f"chebyshev: {cfg.measure.chebyshev_nodes} Chebyshev-Lobatto nodes and {cfg.measure.check_points} "
                "check points per interval (core, each side of a ring), barycentric interpolation; dense where the "
                f"relative error at the check points exceeds {cfg.measure.max_interpolation_error:g} (mean losses) or "
                f"{cfg.measure.max_sample_interpolation_error:g} (kept per-sample losses); accuracy only where evaluated"),
        },
        "grid": {
            "spacing": grid.spacing,
            "half_width": grid.half_width,
            "max_enlargements": grid.max_enlargements,
            "n_points": grid.n_points,
        },
        "dataset": {
            "name": dataset.name,
            "num_classes": dataset.num_classes,
            "input_shape": list(dataset.input_shape),
            "n_train": len(dataset.train),
            "n_val": len(dataset.val),
            "normalization": dataset.normalization,
            "source": dataset.source,
        },
        "model": {
            "name": cfg.model.name,
            "width": cfg.model.width,
            "n_parameters": sum(p.numel() for p in model.parameters()),
        },
        "runtime": parts.threads.as_attrs(),  # this machine's; compare.VOLATILE_ATTRS
        "versions": {
            "losslines": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "zarr": zarr.__version__,
            "python": platform.python_version(),
        },
    }
