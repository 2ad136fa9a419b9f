"""Width multipliers: how a nominal channel count is scaled and rounded.

``scaled(c, width) = max(minimum, round(c * width))``; ``divisible(c, width, d)`` rounds to a
multiple of ``d`` the way MobileNetV2 does (never more than 10 % below ``c * width``). Tiny widths
(e.g. 0.125) give the small models the tests run.
"""

from __future__ import annotations

import math


def check_width(width: float) -> float:
    """Validate a width multiplier (finite, > 0)."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    return float(width)


def scaled(channels: int, width: float, minimum: int = 1) -> int:
    """``channels * width`` rounded to the nearest integer, at least ``minimum``."""
    return max(minimum, int(round(channels * width)))


def divisible(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (at least ``divisor``), not
    dropping more than 10 % below the unrounded value (MobileNetV2's rule)."""
    value = channels * width
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out
