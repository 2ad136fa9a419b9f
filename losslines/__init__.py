"""losslines: measure the loss along every optimizer update direction, store it, analyse it.

The public surface, grouped. Names are imported lazily, so ``import losslines`` followed by
``losslines.open_store(...)`` or ``losslines.analysis`` never imports torch: a machine without
torch can read and analyse stores.
"""

from __future__ import annotations

from losslines._lazy import lazy_exports
from losslines._version import __version__

_EXPORTS = {
    # measuring lines (torch)
    "measure_line": "losslines.engine",
    "LineMeasurement": "losslines.engine",
    "LineEvaluator": "losslines.engine",
    "LineSampler": "losslines.engine",
    "Grid": "losslines.engine",
    "make_grid": "losslines.engine",
    "Schedule": "losslines.engine",
    "LineRecord": "losslines.records",
    "LineShape": "losslines.records",
    # losses (torch)
    "Loss": "losslines.losses",
    "register_loss": "losslines.losses",
    "loss_names": "losslines.losses",
    "SGDDirection": "losslines.engine",
    "OptimizerStepDirection": "losslines.engine",
    # running configured studies (torch)
    "RunConfig": "losslines.runner.config",
    "load_config": "losslines.runner.config",
    "run": "losslines.runner.driver",
    "build_model": "losslines.models",
    "load_dataset": "losslines.data",
    # stores (no torch)
    "open_store": "losslines.store",
    "LineStore": "losslines.store",
    "StoreWriter": "losslines.store",
    "StoreSink": "losslines.store",
    "StoreLayout": "losslines.store",
    "FORMAT_VERSION": "losslines.store",
    # analysis (no torch)
    "analyze_store": "losslines.analysis",
    "compute": "losslines.analysis",
    "plot_line": "losslines.analysis",
    "AnalysisOptions": "losslines.analysis",
    "import_pickles": "losslines.store.importers",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports("losslines", _EXPORTS, globals(), extra=("__version__",))
