"""The analysis metrics, one module each (registered in :mod:`losslines.analysis.registry`).

Each module implements :class:`losslines.analysis.metric.Metric` on top of a pure maths module
(arrays in, arrays out) and owns what the metric reads, its per-block computation, its
metrics.json section, its report.md lines, its per_line.npz arrays and its figures.
"""
