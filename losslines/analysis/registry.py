"""The registry of analysis metrics: name -> :class:`~losslines.analysis.metric.Metric`.

The only process-global state of the analysis. Registration order is presentation order
(metrics.json sections, report.md rows and sections, figures, skip reasons); the computation
order follows each metric's ``needs`` (:func:`computation_order`).

A new metric is one module implementing :class:`~losslines.analysis.metric.Metric` plus one
registration: a line in ``_BUILTIN`` below, or ``register_metric(MyMetric())`` from your code.
"""

from __future__ import annotations

from dataclasses import is_dataclass

from losslines.analysis.metric import Metric, Stage
from losslines.analysis.metrics.batch_size_study import BatchSizeStudyMetric
from losslines.analysis.metrics.compat_comparison import CompatComparisonMetric
from losslines.analysis.metrics.direction_spread import DirectionSpreadMetric
from losslines.analysis.metrics.line_distances import LineDistancesMetric
from losslines.analysis.metrics.line_minimum import LineMinimumMetric
from losslines.analysis.metrics.line_shape import LineShapeMetric
from losslines.analysis.metrics.paper_claims import PaperClaimsMetric
from losslines.analysis.metrics.replayed_rules import ReplayedRulesMetric
from losslines.analysis.metrics.sample_consistency import SampleConsistencyMetric
from losslines.analysis.metrics.slope_sources import SlopeSourcesMetric
from losslines.analysis.metrics.step_quality import StepQualityMetric

_BUILTIN: tuple[Metric, ...] = (
    ReplayedRulesMetric(),
    SlopeSourcesMetric(),
    LineMinimumMetric(),
    LineShapeMetric(),
    LineDistancesMetric(),
    BatchSizeStudyMetric(),
    DirectionSpreadMetric(),
    SampleConsistencyMetric(),
    StepQualityMetric(),
    PaperClaimsMetric(),
    CompatComparisonMetric(),
)

_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric`` (after the registered ones) and return it.

    Raises:
        ValueError: the name is taken (unless ``replace``: then it takes the old one's place), or
            the metric is malformed (no name, unknown stage, options_type not a dataclass).
    """
    name = getattr(metric, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a metric needs a name that is an identifier, got {name!r}")
    if not isinstance(metric.stage, Stage):
        raise ValueError(f"metric {name!r}: stage must be one of {[s.value for s in Stage]}, got {metric.stage!r}")
    if metric.options_type is not None:
        if not is_dataclass(metric.options_type):
            raise ValueError(f"metric {name!r}: options_type must be a dataclass")
        try:
            metric.options_type()
        except TypeError:
            raise ValueError(f"metric {name!r}: every field of its options_type needs a default") from None
    if name in _REGISTRY and not replace:
        raise ValueError(f"a metric named {name!r} is already registered; pass replace=True to replace it")
    _REGISTRY[name] = metric
    return metric


def unregister_metric(name: str) -> Metric:
    """Remove and return the metric ``name``.

    Raises:
        KeyError: no such metric (the message lists the registered names).
    """
    get_metric(name)
    return _REGISTRY.pop(name)


def get_metric(name: str) -> Metric:
    """The registered metric ``name``.

    Raises:
        KeyError: no such metric (the message lists the registered names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {list(_REGISTRY)}") from None


def registered_metrics() -> tuple[Metric, ...]:
    """Every registered metric, in registration (presentation) order."""
    return tuple(_REGISTRY.values())


def computation_order(metrics: tuple[Metric, ...]) -> tuple[Metric, ...]:
    """``metrics`` ordered so that each runs after the metrics it ``needs`` (else as given).

    Raises:
        ValueError: a needed metric is missing or in another stage, or the needs form a cycle.
    """
    by_name = {m.name: m for m in metrics}
    order: list[Metric] = []

    def visit(metric: Metric, chain: tuple[str, ...]) -> None:
        if metric in order:
            return
        if metric.name in chain:
            raise ValueError(f"metrics need each other in a cycle: {' -> '.join(chain + (metric.name,))}")
        for need in metric.needs:
            if need not in by_name:
                raise ValueError(f"metric {metric.name!r} needs {need!r}, which is not among the metrics "
                                 f"{list(by_name)}")
            if by_name[need].stage is not metric.stage:
                raise ValueError(f"metric {metric.name!r} ({metric.stage.value}) needs {need!r} "
                                 f"({by_name[need].stage.value}): needs must share a stage")
            visit(by_name[need], chain + (metric.name,))
        order.append(metric)

    for metric in metrics:
        visit(metric, ())
    return tuple(order)


for _metric in _BUILTIN:
    register_metric(_metric)
