"""Records passed from the computation to the figures and the report (no computation here)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from losslines.analysis.bands import BatchBands
from losslines.analysis.direction_stats import DirectionStats
from losslines.analysis.distances import DistanceSummary
from losslines.analysis.polyfit import DEFAULT_DEGREES, DEFAULT_REL_TOL, DEFAULT_WINDOW
from losslines.analysis.slopes import DEFAULT_HALF_POINTS
from losslines.analysis.smoothing import DEFAULT_SMOOTHING
from losslines.analysis.steprules import StepOutcome

FIGURE_FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class AnalysisOptions:
    """Every knob of ``losslines analyze``.

    Attributes:
        window: half-width w of the fit / distance window (distance along û).
        degrees: polynomial degrees fitted on the window (Fig. 4).
        rel_tol: a line is "not parabolic" when MAE_2 > rel_tol * (loss range on the window).
        sgd_lrs: learning rates λ' of the replayed SGD rules; None: 1/4, 1/2, 1 and 2 times the
            store's median λ.
        pal_mus: measuring steps μ of the replayed PAL and full-batch PAL rules.
        slope_half_points: m of the grid slope stencil (2m + 1 points around s = 0).
        batch_sizes: sizes of the batch-size study; None: n_B/8 ... 8 n_B (powers of two).
        n_draws: random batches per size and line (batch-size study and bands).
        seed: seed of every random draw (combined with the line index).
        plot_lines: committed line indices drawn as line plots (Figs. 2, 5); None: 4 spread out.
        smoothing: moving-average width (lines) of the metric curves.
        distance_block: tile edge (lines) of the blockwise distance matrix.
        view_size: at most this many lines in the plotted distance matrix.
        max_distance_lines: beyond this many analysed lines, distances use every k-th line.
        sample_block_bytes: memory budget of one block of per-sample losses.
        save_distance_matrix: also write the full matrix to ``distances.zarr`` (float32).
        formats: figure file formats.
    """

    window: float = DEFAULT_WINDOW
    degrees: tuple[int, ...] = DEFAULT_DEGREES
    rel_tol: float = DEFAULT_REL_TOL
    sgd_lrs: tuple[float, ...] | None = None
    pal_mus: tuple[float, ...] = (0.1,)
    slope_half_points: int = DEFAULT_HALF_POINTS
    batch_sizes: tuple[int, ...] | None = None
    n_draws: int = 16
    seed: int = 0
    plot_lines: tuple[int, ...] | None = None
    smoothing: int = DEFAULT_SMOOTHING
    distance_block: int = 1024
    view_size: int = 400
    max_distance_lines: int = 20_000
    sample_block_bytes: int = 64 * 2**20
    save_distance_matrix: bool = False
    formats: tuple[str, ...] = FIGURE_FORMATS

    def __post_init__(self) -> None:
        if not self.window > 0:
            raise ValueError(f"window must be > 0, got {self.window}")
        if any(m <= 0 for m in self.pal_mus):
            raise ValueError(f"PAL measuring steps must be > 0, got {self.pal_mus}")
        if self.sgd_lrs is not None and any(lr <= 0 for lr in self.sgd_lrs):
            raise ValueError(f"replayed learning rates must be > 0, got {self.sgd_lrs}")
        if self.n_draws < 2:
            raise ValueError(f"n_draws must be >= 2, got {self.n_draws}")
        if self.smoothing < 1:
            raise ValueError(f"smoothing must be >= 1, got {self.smoothing}")
        bad = sorted(set(self.formats) - {"png", "pdf", "svg"})
        if bad:
            raise ValueError(f"unknown figure format(s) {bad}; valid: png, pdf, svg")


@dataclass(frozen=True)
class LineView:
    """One line prepared for a line plot (Figs. 2, 5).

    Attributes:
        line: committed line index; ``step``: its training step.
        losses: ``{"train"|"batch"|"val": [K]}`` mean losses (nats) present in the store.
        bands: quantile bands of random training batches, or None without per-sample losses.
        marks: ``{rule key: step size}`` steps to mark (taken, optimum, replays).
    """

    line: int
    step: int
    losses: dict[str, np.ndarray]
    bands: BatchBands | None
    marks: dict[str, float]


@dataclass(frozen=True)
class BatchStudy:
    """Batch size versus learning rate (Fig. 7).

    Attributes:
        batch_sizes: ``[S]`` sizes b; ``n_batch``: n_B.
        expected_ratio: ``[S]`` n_B / b for super-batches, 1 otherwise.
        slopes: ``[L, S, D]`` slope at 0 of every drawn batch (nats per unit s).
        batch_slope: ``[L]`` the direction batch's own slope from the same stencil.
        sgd_steps: ``[L, S]`` mean over draws of ``-λ L_S'(0)``, the step SGD would take.
        method: how slopes were obtained (stencil, its bias and noise).
    """

    batch_sizes: np.ndarray
    n_batch: int
    expected_ratio: np.ndarray
    slopes: np.ndarray
    batch_slope: np.ndarray
    sgd_steps: np.ndarray
    method: str


@dataclass
class AnalysisResult:
    """Everything the figures and the report need. Per-line arrays are ``[L]`` over the
    analysed lines ``lines`` (committed indices); ``accumulated[rule]`` holds the running sums
    ``{"improvement": [L], "distance": [L]}`` of a rule (NaN lines count as 0)."""

    store: str
    status: str
    committed_lines: int
    lines: np.ndarray
    position: np.ndarray
    options: AnalysisOptions
    per_line: dict[str, np.ndarray] = field(default_factory=dict)
    coef: dict[int, np.ndarray] = field(default_factory=dict)
    rules: dict[str, StepOutcome] = field(default_factory=dict)
    accumulated: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    slope_sources: dict[str, dict[str, int]] = field(default_factory=dict)
    distances: DistanceSummary | None = None
    distance_lines: np.ndarray | None = None
    batch_study: BatchStudy | None = None
    views: list[LineView] = field(default_factory=list)
    directions: DirectionStats | None = None
    direction_steps: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
