"""The protocol of an analysis metric, and the small records passed in and out of it.

A metric is one quantity of the analysis (the line minimum, the replayed step rules, the
batch-size study...). It says what it reads and computes it; the orchestration
(:mod:`losslines.analysis.compute`) reads the store block by block, once for all metrics, and
drives every registered metric (:mod:`losslines.analysis.registry`) through the same steps:

1. ``plan(setup) -> Plan``: what it reads per block, why (part of) it is skipped, notes, and
   any parameters it derives from the whole store (e.g. the replayed learning rates).
2. ``block(plan, block) -> Parts``: the computation on one block of lines; each part is an
   array whose first axis concatenates over blocks (usually one row per line).
3. ``finish(plan, parts) -> MetricResult``: whole-pass work on the concatenated parts (tiled
   distances, stacking) into per-line arrays for ``per_line.npz`` and a typed value.
4. ``summary(analysis)``: its entries of ``metrics.json`` (the first one under its name);
   ``report(summary)``: its rows of the headline table and its section of ``report.md``;
   ``figures(analysis)``: its figures, only when it has data.

Metrics run in one of three :class:`Stage` s: over blocks of the small per-line arrays, over
blocks of per-sample losses (bounded by ``options.sample_block_bytes``), or once on the whole
store (``block`` is not called). Results must not depend on how lines are split into blocks.
A metric that needs another one's per-block output names it in ``needs`` (same stage); it then
runs after it and finds its parts in ``block.upstream[name]``.

Presentation (metrics.json keys, report.md rows and sections, figures, skip reasons) follows
the registration order, computation follows ``needs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import numpy as np

from losslines.analysis.results import AnalysisOptions
from losslines.analysis.source import LineRange, LineSource

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from losslines.analysis.results import AnalysisResult

Parts = Mapping[str, np.ndarray]


class Stage(str, Enum):
    """How a metric meets the store."""

    LINES = "lines"  # blocks of the small per-line arrays ([n, ...], e.g. loss_train [n, K])
    SAMPLES = "samples"  # blocks of per-sample losses ([n, K, N]), sized by the memory budget
    WHOLE = "whole"  # once, no blocks: finish() reads what it needs from plan.setup.source


@dataclass(frozen=True)
class Setup:
    """What every metric sees before the pass.

    Attributes:
        source: the store (read-only, committed lines only).
        lines: the analysed committed lines.
        options: every knob; a metric's own knobs are in ``options.metric_options[name]``.
        position: ``[K]`` float64 grid (distance along the unit update direction).
        out_dir: the report folder, where a metric may write large outputs of its own; None
            when nothing may be written.
        nonfinite: ``[L]`` bool, the analysed lines that are non-finite
            (``losslines.records.nonfinite_line``: a diverging run's NaN or ±inf at s = 0). They
            are left out of every metric: in ``Block.arrays`` their measured values are NaN, as
            for lines never measured (the store keeps them as they are). None: none.
    """

    source: LineSource
    lines: LineRange
    options: AnalysisOptions
    position: np.ndarray
    out_dir: Path | None = None
    nonfinite: np.ndarray | None = None


@dataclass(frozen=True)
class Plan:
    """A metric's decision before the pass.

    Attributes:
        setup: the run it belongs to.
        run: False: the metric is skipped entirely (``skipped`` says why).
        reads: store arrays read per block; those the store lacks are left out of
            ``Block.arrays``.
        skipped: reasons something of this metric is not computed (report.md, "Skipped").
        notes: caveats worth reading (report.md, "Notes").
        params: the metric's own derived parameters (a frozen record of its choosing).
    """

    setup: Setup
    run: bool = True
    reads: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    params: Any = None


@dataclass(frozen=True)
class Block:
    """One block of analysed lines.

    Attributes:
        offset: position of the first row among the analysed lines (0 = ``lines.start``).
        lines: ``[n]`` committed line indices of the rows.
        arrays: ``{name: [n, ...]}`` the planned store arrays, as stored (dtype unchanged), but
            NaN in every floating-point array on the rows of non-finite lines (``Setup.nonfinite``).
        upstream: ``{metric: parts}`` this block's parts of the metrics in ``needs``.
    """

    offset: int
    lines: np.ndarray
    arrays: Mapping[str, np.ndarray]
    upstream: Mapping[str, Parts] = field(default_factory=dict)

    def f64(self, name: str) -> np.ndarray:
        """``arrays[name]`` as float64."""
        return self.arrays[name].astype(np.float64)


@dataclass(frozen=True)
class MetricResult:
    """What a metric computed over all analysed lines (L of them).

    Attributes:
        computed: False when it has nothing to report (``skipped`` says why).
        per_line: ``{name: [L]}`` per-line values: ``AnalysisResult.per_line`` and
            ``per_line.npz`` as ``line_<name>``.
        arrays: ``{npz key: [L, ...]}`` further per-line arrays for ``per_line.npz``.
        value: the metric's own record (e.g. a distance summary), for its summary and figures.
        marks: ``{label: [L]}`` step sizes (distance along û) to mark on the line plots.
        skipped, notes: as in :class:`Plan`; the orchestration prepends the plan's.
    """

    computed: bool = True
    per_line: Mapping[str, np.ndarray] = field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    value: Any = None
    marks: Mapping[str, np.ndarray] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportPart:
    """A metric's share of report.md.

    Attributes:
        headline: rows ``| quantity | value |`` of the headline table.
        section: lines of its own section (start it with an empty line).
    """

    headline: tuple[str, ...] = ()
    section: tuple[str, ...] = ()


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its title in report.md, its file stem, and the function that draws it."""

    title: str
    stem: str
    draw: Callable[[AnalysisResult], Figure]


class Metric:
    """Base of every metric: override ``block`` (or ``finish``) and ``summary``; the rest is optional.

    Class attributes:
        name: registry name and the metrics.json key of its summary.
        stage: :class:`Stage` of its computation.
        reads: store arrays it reads per block (the default plan reads these).
        requires: store arrays it computes from beyond ``loss_train`` (``directions/NAME`` for the
            all-directions group); a store lacking all of them gets a skip reason, not an error.
        needs: metrics (same stage) whose per-block parts it reads.
        options_type: a frozen dataclass of its own knobs, with defaults; each field becomes a
            CLI flag ``--NAME-FIELD`` and lands in ``AnalysisOptions.metric_options[name]``.
    """

    name: ClassVar[str]
    stage: ClassVar[Stage] = Stage.LINES
    reads: ClassVar[tuple[str, ...]] = ("loss_train",)
    requires: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[tuple[str, ...]] = ()
    options_type: ClassVar[type | None] = None

    def plan(self, setup: Setup) -> Plan:
        """Default: read ``reads``; skip when the store has none of ``requires``."""
        if self.requires and not any(setup.source.has(n) for n in self.requires):
            return Plan(setup, run=False, skipped=(f"{self.name}: the store has none of {list(self.requires)}",))
        return Plan(setup, reads=self.reads)

    def block(self, plan: Plan, block: Block) -> Parts:
        """Parts of one block (arrays concatenated over blocks along their first axis)."""
        return {}

    def finish(self, plan: Plan, parts: Parts) -> MetricResult:
        """Default: every part is a per-line array."""
        return MetricResult(per_line=dict(parts))

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        """JSON-ready entries of metrics.json, the first under ``name``; called when computed."""
        raise NotImplementedError(f"metric {self.name!r} has no summary")

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        """Its share of report.md, from the whole metrics.json content."""
        return ReportPart()

    def figures(self, analysis: AnalysisResult) -> tuple[FigureSpec, ...]:
        """Its figures; none unless it has data."""
        return ()

    def own_options(self, options: AnalysisOptions) -> Any:
        """This metric's knobs: ``options.metric_options[name]`` or the defaults."""
        if self.options_type is None:
            return None
        return options.metric_options.get(self.name) or self.options_type()

    def output(self, analysis: AnalysisResult) -> MetricResult:
        """This metric's result inside a finished analysis."""
        return analysis.outputs[self.name]

    def __repr__(self) -> str:
        return f"<metric {self.name!r} ({self.stage.value})>"
