"""Records passed from the computation to the figures and the report (no computation here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.bands import BatchBands
from losslines.analysis.batchsize import BatchStudy
from losslines.analysis.polyfit import DEFAULT_DEGREES, DEFAULT_REL_TOL, DEFAULT_WINDOW
from losslines.analysis.slopes import DEFAULT_HALF_POINTS
from losslines.analysis.smoothing import DEFAULT_SMOOTHING

if TYPE_CHECKING:
    from losslines.analysis.direction_stats import DirectionStats
    from losslines.analysis.distances import DistanceSummary
    from losslines.analysis.metric import Metric, MetricResult
    from losslines.analysis.steprules import StepOutcome

__all__ = ["AnalysisOptions", "AnalysisResult", "BatchStudy", "LineView", "FIGURE_FORMATS"]

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
        metric_options: ``{metric name: its options record}`` for metrics that declare their own
            knobs (:attr:`losslines.analysis.metric.Metric.options_type`); missing: defaults.
        compat: ``"none"`` (the default definitions) or ``"original"``: the original analysis
            code's definitions of the quantities listed in :mod:`losslines.analysis.compat`.
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
    metric_options: Mapping[str, Any] = field(default_factory=dict)
    compat: str = "none"

    def __post_init__(self) -> None:
        if self.compat not in ("none", "original"):
            raise ValueError(f"compat must be 'none' or 'original', got {self.compat!r}")
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


@dataclass
class AnalysisResult:
    """Everything the figures and the report need.

    Per-line arrays are ``[L]`` over the analysed lines ``lines`` (committed indices).

    Attributes:
        metrics: the metrics that ran, in registration (presentation) order.
        outputs: ``{metric name: MetricResult}``, skipped ones included (``computed`` False).
        per_line: ``{name: [L]}`` the store's ``step``, ``lr``, ``direction_norm``,
            ``update_step``, ``nonfinite`` (bool: the line is NaN or ±inf at s = 0, a diverged run's,
            and left out of every metric, whose values there are NaN) and every metric's per-line
            values.
        views: the lines drawn as line plots.
        skipped, notes: every metric's reasons and caveats, in registration order, each once.
    """

    store: str
    status: str
    committed_lines: int
    lines: np.ndarray
    position: np.ndarray
    options: AnalysisOptions
    metrics: tuple[Metric, ...] = ()
    outputs: dict[str, MetricResult] = field(default_factory=dict)
    per_line: dict[str, np.ndarray] = field(default_factory=dict)
    views: list[LineView] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        ran = [m.name for m in self.metrics if self.outputs.get(m.name) is not None and self.outputs[m.name].computed]
        lines = f"{self.lines[0]}..{self.lines[-1]}" if self.lines.size else "none"
        return (f"<AnalysisResult of {self.store}: {self.lines.size} lines ({lines}) of {self.committed_lines} "
                f"committed, status {self.status}; metrics {', '.join(ran) or 'none'}; "
                f"{len(self.skipped)} skipped; .to_dataframe(), .to_xarray(), .summary()>")

    def per_line_columns(self) -> dict[str, np.ndarray]:
        """The one-value-per-line results (``[L]``), by name, the committed line index first."""
        n = self.lines.size
        columns = {"line": np.asarray(self.lines)}
        columns.update({k: np.asarray(v) for k, v in self.per_line.items() if np.ndim(v) == 1 and len(v) == n})
        return columns

    def to_dataframe(self):
        """A pandas DataFrame: one row per analysed line (indexed by the committed line index),
        one column per per-line result (``step``, ``lr``, ``s_opt``, ``mae2``, ...).

        Raises:
            ImportError: pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("AnalysisResult.to_dataframe needs pandas: pip install pandas") from None
        columns = self.per_line_columns()
        return pd.DataFrame(columns).set_index("line")

    def to_xarray(self):
        """An xarray Dataset along ``line`` (coordinates ``line`` and ``step``) with every per-line
        result, the options and the store in its attributes.

        Raises:
            ImportError: xarray is not installed (``pip install 'losslines[xarray]'``).
        """
        try:
            import xarray as xr
        except ImportError:
            raise ImportError("AnalysisResult.to_xarray needs xarray: pip install 'losslines[xarray]'") from None
        columns = self.per_line_columns()
        coords = {"line": columns.pop("line")}
        if "step" in columns:
            coords["step"] = ("line", columns.pop("step"))
        return xr.Dataset({k: ("line", v) for k, v in columns.items()}, coords=coords,
                          attrs={"store": self.store, "status": self.status, "committed_lines": self.committed_lines})

    def summary(self) -> dict[str, Any]:
        """What metrics.json holds (without the figures and timings of a written report)."""
        from losslines.analysis.report import summarize_analysis

        return summarize_analysis(self)

    def value(self, metric: str) -> Any:
        """The typed value of one metric's result (None when it did not run or has none)."""
        out = self.outputs.get(metric)
        return None if out is None else out.value

    # The attributes of the built-in metrics, by their former names.

    @property
    def rules(self) -> dict[str, StepOutcome]:
        """``{rule key: StepOutcome}`` of the replayed step rules."""
        v = self.value("rules")
        return v.outcomes if v is not None else {}

    @property
    def accumulated(self) -> dict[str, dict[str, np.ndarray]]:
        """``{rule key: {"improvement": [L], "distance": [L]}}`` running sums (NaN counts as 0)."""
        v = self.value("rules")
        return v.accumulated if v is not None else {}

    @property
    def coef(self) -> dict[int, np.ndarray]:
        """``{degree k: [L, k + 1]}`` polynomial coefficients, highest power first."""
        v = self.value("shape")
        return v if v is not None else {}

    @property
    def slope_sources(self) -> dict[str, dict[str, int]]:
        """``{split: {"exact": n, "grid": n}}``: where the slopes at 0 came from."""
        v = self.value("slope_sources")
        return v.counts if v is not None else {}

    @property
    def distances(self) -> DistanceSummary | None:
        v = self.value("distances")
        return v.summary if v is not None else None

    @property
    def distance_lines(self) -> np.ndarray | None:
        """Committed indices of the lines in the distance matrices."""
        v = self.value("distances")
        return v.lines if v is not None else None

    @property
    def batch_study(self) -> BatchStudy | None:
        return self.value("batch_size")

    @property
    def directions(self) -> DirectionStats | None:
        v = self.value("directions")
        return v.stats if v is not None else None

    @property
    def direction_steps(self) -> np.ndarray | None:
        v = self.value("directions")
        return v.steps if v is not None else None
