"""Reduced evaluation: the settings of a line measured at Chebyshev nodes, and when it is accepted.

(docs/design.md, "The measurement": reduced evaluation.) With ``LineSampler(nodes=ReducedNodes(...))``
each interval of a line — the core, and each side of an enlargement ring — is evaluated at
``n_nodes`` Chebyshev–Lobatto nodes and ``n_checks`` check points of the grid, and every other
grid point is reconstructed by barycentric interpolation (``engine.chebyshev``). The step taken
(``loss_at_update``) and the slopes at 0 (forward-mode AD) are measured exactly as in a dense
line. The interpolant's error is measured at the check points of every line and split; a line
is kept as reconstructed only if, for every split,

    error of the mean loss      <= max_error          (relative, at the check points)
    error of per-sample losses  <= max_sample_error   (splits whose per-sample losses are kept)

and is otherwise measured densely (its stored values are then a dense line's, bit for bit).

Why two bounds (measured on the quickstart's small ReLU CNN, ``bench/chebyshev_savings.py``):
the mean over 1,500 samples smooths the kinks that ReLUs put into every sample's line, so the
mean loss reaches 1e-5 with 17 nodes on most lines, while a single sample's line has kinks of
its own and converges only like 1/n (1e-3 … 1e-2 even at 61 nodes). The per-sample bound's
default, 1e-3, is about float16's resolution (2^-10), the dtype per-sample losses are stored in
by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

NODE_MODES = ("dense", "chebyshev")


@dataclass(frozen=True)
class ReducedNodes:
    """How a reduced line is evaluated and when it is accepted.

    Attributes:
        n_nodes: Chebyshev–Lobatto nodes per interval (odd: s = 0 is a node of the core), >= 3.
        n_checks: grid points per interval evaluated directly to measure the interpolant's error, >= 1.
        max_error: largest accepted relative error of a split's mean loss at the check points.
        max_sample_error: largest accepted relative error of the per-sample losses (each
            relative to ``max(|ℓ_i|, L)``), for the splits whose per-sample losses are kept.

    Raises:
        ValueError: a count or bound out of range (one line naming it).
    """

    n_nodes: int = 17
    n_checks: int = 4
    max_error: float = 1e-4
    max_sample_error: float = 1e-3

    def __post_init__(self) -> None:
        for name, low in (("n_nodes", 3), ("n_checks", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"ReducedNodes.{name} must be an integer >= {low}, got {value!r}")
        if self.n_nodes % 2 == 0:
            raise ValueError(f"ReducedNodes.n_nodes must be odd (s = 0 is then a node), got {self.n_nodes}")
        for name in ("max_error", "max_sample_error"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"ReducedNodes.{name} must be a finite number > 0, got {value!r}")

    def accepts(self, errors: Mapping[str, tuple[float, float]], sample_losses: Sequence[str]) -> bool:
        """Is a line with ``errors`` (``{split: (mean-loss error, per-sample error)}``) kept as
        reconstructed? (NaN or inf errors, a diverged line's, are not accepted.)"""
        for split, (error, sample_error) in errors.items():
            if not error <= self.max_error:
                return False
            if split in sample_losses and not sample_error <= self.max_sample_error:
                return False
        return True

    def describe(self, errors: Mapping[str, tuple[float, float]]) -> str:
        """``errors`` as one line of text, with the bounds."""
        parts = [f"{split} {e:.2g}/{se:.2g}" for split, (e, se) in errors.items()]
        return f"(mean/per-sample: {', '.join(parts)}; bounds {self.max_error:g}/{self.max_sample_error:g})"
