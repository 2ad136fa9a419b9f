"""losslines.runner: the application layer of ``losslines run`` — config in, store out.

* ``config``: the TOML config as typed, validated records (``RunConfig``, ``load_config``).
* ``optimizers`` / ``lr_schedules``: registries of optimizers and learning-rate schedules
  (``register_optimizer``, ``register_lr_schedule``); models and datasets have theirs in
  ``losslines.models`` and ``losslines.data``, losses in ``losslines.losses``.
* ``parts``: the config turned into a run's parts; ``attrs``: the store attributes it writes.
* ``data_order``, ``seeds``: the training batches and the run's seeded random streams.
* ``loop``: the training loop; ``checkpoint``: its state on disk; ``signals``, ``progress``.
* ``driver``: ``run(cfg)``; ``tensorboard``: the optional per-line TensorBoard log (``store.tensorboard``).

Import rule (docs/design.md, "Architecture"): ``losslines.engine`` never imports this package;
the run layer builds engine objects and hands them a store sink. Names are imported lazily, so
``import losslines.runner.config`` costs no torch import.
"""

from __future__ import annotations

from losslines._lazy import lazy_exports


_EXPORTS = {
    "RunConfig": "losslines.runner.config",
    "load_config": "losslines.runner.config",
    "parse_config": "losslines.runner.config",
    "ConfigError": "losslines.runner.config",
    "RunResult": "losslines.runner.driver",
    "run": "losslines.runner.driver",
    "register_optimizer": "losslines.runner.optimizers",
    "optimizer_names": "losslines.runner.optimizers",
    "register_lr_schedule": "losslines.runner.lr_schedules",
    "lr_schedule_names": "losslines.runner.lr_schedules",
    "lr_at": "losslines.runner.lr_schedules",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports("losslines.runner", _EXPORTS, globals(), extra=())
