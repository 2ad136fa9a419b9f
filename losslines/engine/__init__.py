"""losslines.engine: measure exact loss lines along update directions, without disturbing training.

The measurement library (docs/design.md, "Architecture"): it imports nothing of the application
(``losslines.runner``), the store, the data or the model registries; it emits
``losslines.records.LineRecord`` s into whatever sink it is given.

* ``grid``: the fixed step-size grid (``make_grid``, ``Grid``).
* ``directions``: where a line points (``SGDDirection``, ``OptimizerStepDirection``, ``Direction``).
* ``evaluator``: one line of one split (``LineEvaluator``, ``measure_line``, ``LineMeasurement``);
  ``line`` (θ_t + s·û as a function), ``strategies`` (``loop``, ``vmap``, ``auto`` and its
  ``StrategyReport``), ``memory`` (chunk sizes from a memory budget), ``modes`` (BatchNorm/dropout
  settings), ``rng`` (the global generators, captured and preserved).
* ``schedule``: which steps are measured (``Schedule``).
* ``sampler``: the training-loop hook (``LineSampler``); ``all_directions``: the paper's Fig. 8 mode.
* ``chebyshev``, ``reduced``: reduced evaluation — a line from Chebyshev nodes by barycentric
  interpolation, its error measured at check points (``ReducedNodes``).
"""

from losslines.engine.directions import (Direction, DirectionSource, OptimizerStepDirection, SGDDirection)
from losslines.engine.evaluator import LineEvaluator, LineMeasurement, measure_line
from losslines.engine.grid import Grid, make_grid
from losslines.engine.modes import BN_MODES, DROPOUT_MODES
from losslines.engine.reduced import NODE_MODES, ReducedNodes
from losslines.engine.sampler import LineSampler
from losslines.engine.schedule import SCHEDULE_KINDS, Schedule, make_schedule
from losslines.engine.strategies import STRATEGIES, Strategy, StrategyReport, make_strategy, register_strategy

__all__ = [
    # grid
    "Grid", "make_grid",
    # directions
    "Direction", "DirectionSource", "SGDDirection", "OptimizerStepDirection",
    # evaluation
    "LineEvaluator", "LineMeasurement", "measure_line", "BN_MODES", "DROPOUT_MODES",
    "STRATEGIES", "Strategy", "StrategyReport", "make_strategy", "register_strategy",
    # schedules and the hook
    "Schedule", "make_schedule", "SCHEDULE_KINDS", "LineSampler",
    # reduced evaluation
    "ReducedNodes", "NODE_MODES",
]
