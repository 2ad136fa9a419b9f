"""A metric's own knobs: its options dataclass, the CLI flags derived from it, and their check.

A metric declares ``options_type``, a frozen dataclass whose fields all have defaults (bool,
int, float, str, or a tuple of int/float). Each field becomes the ``losslines analyze`` flag
``--<metric>-<field>`` (underscores as dashes; help from ``field(metadata={"help": ...})``);
the parsed record goes to ``AnalysisOptions.metric_options[<metric>]`` and into metrics.json.
The comma-separated list parsers of the other flags of ``losslines analyze`` live here too.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields
from typing import Any, Callable, Iterable

from losslines.analysis.metric import Metric
from losslines.analysis.results import AnalysisOptions


def comma_floats(text: str) -> tuple[float, ...]:
    """``"0.1,0.2"`` -> ``(0.1, 0.2)`` (an argparse type)."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def comma_ints(text: str) -> tuple[int, ...]:
    """``"4,16"`` -> ``(4, 16)`` (an argparse type)."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _parser_of(default: Any) -> dict[str, Any]:
    """argparse keywords for a field with this default value."""
    if isinstance(default, bool):
        return {"action": argparse.BooleanOptionalAction}
    if isinstance(default, (int, float, str)):
        return {"type": type(default)}
    if isinstance(default, tuple) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in default):
        parse: Callable[[str], tuple] = comma_ints if default and all(isinstance(v, int) for v in default) \
            else comma_floats
        return {"type": parse, "metavar": "X,..."}
    raise TypeError(f"no command-line form for an option with default {default!r}: use bool, int, float, str or "
                    "a tuple of numbers")


def _dest(metric: Metric, name: str) -> str:
    return f"metric.{metric.name}.{name}"


def add_metric_arguments(parser: argparse.ArgumentParser, metrics: Iterable[Metric]) -> None:
    """Add ``--<metric>-<field>`` for every field of every metric's ``options_type``."""
    for metric in metrics:
        if metric.options_type is None:
            continue
        group = parser.add_argument_group(f"metric {metric.name}")
        defaults = metric.options_type()
        for f in fields(metric.options_type):
            default = getattr(defaults, f.name)
            flag = f"--{metric.name}-{f.name}".replace("_", "-")
            group.add_argument(flag, dest=_dest(metric, f.name), default=default,
                               help=f.metadata.get("help", f"option {f.name!r} of metric {metric.name!r}"),
                               **_parser_of(default))


def metric_options_from_args(args: argparse.Namespace, metrics: Iterable[Metric]) -> dict[str, Any]:
    """``{metric name: options record}`` from arguments added by :func:`add_metric_arguments`."""
    return {m.name: m.options_type(**{f.name: getattr(args, _dest(m, f.name)) for f in fields(m.options_type)})
            for m in metrics if m.options_type is not None}


def check_metric_options(options: AnalysisOptions, metrics: Iterable[Metric]) -> None:
    """Every ``options.metric_options`` entry names a metric with options, and has its type.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or a record of another type.
    """
    with_options = {m.name: m for m in metrics if m.options_type is not None}
    for name, record in options.metric_options.items():
        if name not in with_options:
            raise ValueError(f"metric_options names {name!r}, not a metric with options; valid: {list(with_options)}")
        expected = with_options[name].options_type
        if not isinstance(record, expected):
            raise ValueError(f"metric_options[{name!r}] must be a {expected.__name__}, got {type(record).__name__}")


def metric_options_json(options: AnalysisOptions) -> dict[str, dict[str, Any]]:
    """``options.metric_options`` as JSON types (tuples become lists)."""
    return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(record).items()}
            for name, record in options.metric_options.items()}
