"""Where the analysis's independent pieces of work run: here, one after another, or on dask.

The analysis has two kinds of independent work: the blocks of lines of a stage (every metric's
``block`` on the same rows, ``analysis.compute``) and the tiles of the line-to-line distance
matrix (``analysis.distances``). Both are handed to an :class:`Executor` as a list of calls; the
results come back in order and are combined here exactly as one process combines them, so every
executor gives the same numbers, bit for bit.

``make_executor(scheduler)``:

* ``None`` / ``"serial"``: in this process, in order (no dask needed);
* ``"threads"``, ``"processes"``, ``"synchronous"``: dask's local schedulers (``pip install dask``);
* an address (``"tcp://10.0.0.5:8786"``) or a ``distributed.Client``: a dask cluster
  (``pip install distributed``). The workers read the store themselves (a shared filesystem or
  an fsspec URL they can reach); only the per-block results travel back.

Workers other than threads get the store, the metrics and their plans by pickling; metrics are
plain objects and a store is reopened from its location.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Sequence

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


class Executor:
    """Runs a list of independent calls in this process, in order (the default)."""

    name = "serial"
    parallel = False

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[fn(item) for item in items]``, in order."""
        return [fn(item) for item in items]


class DaskExecutor(Executor):
    """Runs the calls as dask tasks on a local scheduler or a ``distributed`` client."""

    parallel = True

    def __init__(self, scheduler: Any, name: str):
        self._scheduler, self.name = scheduler, name

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        if isinstance(self._scheduler, str):
            import dask

            tasks = [dask.delayed(fn, pure=False)(item) for item in items]
            return list(dask.compute(*tasks, scheduler=self._scheduler))
        client = self._scheduler
        return client.gather(client.map(fn, list(items), pure=False))


SERIAL = Executor()


def make_executor(scheduler: Any = None) -> Executor:
    """The executor for ``losslines analyze --scheduler`` (see the module docstring).

    Raises:
        ValueError: dask (or ``distributed`` for an address) is not installed, or the address
            cannot be reached.
    """
    if scheduler is None or scheduler == "serial":
        return SERIAL
    if isinstance(scheduler, Executor):
        return scheduler
    if isinstance(scheduler, str) and scheduler in LOCAL_SCHEDULERS:
        try:
            import dask  # noqa: F401
        except ImportError:
            raise ValueError(f"--scheduler {scheduler} needs dask: pip install dask (or pip install "
                             "'losslines[xarray]')") from None
        return DaskExecutor(scheduler, scheduler)
    if isinstance(scheduler, str):
        try:
            from distributed import Client
        except ImportError:
            raise ValueError(f"--scheduler {scheduler}: a dask cluster address needs the distributed package: "
                             "pip install distributed") from None
        try:
            client = Client(scheduler, timeout=30, set_as_default=False)
        except OSError as err:
            raise ValueError(f"--scheduler {scheduler}: no dask scheduler answers there ({err}); start one with "
                             "dask scheduler, or use threads / processes") from None
        return DaskExecutor(client, f"dask cluster at {scheduler}")
    if hasattr(scheduler, "map") and hasattr(scheduler, "gather"):  # a distributed.Client
        return DaskExecutor(scheduler, f"dask client {getattr(scheduler, 'scheduler', '')}".strip())
    raise ValueError(f"scheduler must be None, 'serial', one of {LOCAL_SCHEDULERS}, a dask scheduler address "
                     f"or a distributed.Client, got {scheduler!r}")


_current: ContextVar[Executor] = ContextVar("losslines_analysis_executor", default=SERIAL)


def current_executor() -> Executor:
    """The executor of the analysis running in this context (serial outside one, and in workers)."""
    return _current.get()


@contextmanager
def using(executor: Executor) -> Iterator[Executor]:
    """Make ``executor`` the current one for the block (``analysis.compute`` wraps a pass in it)."""
    token = _current.set(executor)
    try:
        yield executor
    finally:
        _current.reset(token)
