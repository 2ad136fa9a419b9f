"""How many CPU threads torch uses in a run: the ``threads`` config key resolved and applied.

``threads = N > 0`` is taken as given. ``threads = 0`` (the default) means *the cores this
process may use*, in this order:

1. ``OMP_NUM_THREADS`` when set (``torchrun`` sets it to 1 for every process it starts; a user or
   a job scheduler may set it);
2. otherwise the CPUs of the process's affinity mask (``os.sched_getaffinity``: ``taskset``,
   ``numactl``, a Slurm or container cpuset), capped by a cgroup CPU quota
   (``/sys/fs/cgroup/cpu.max``, e.g. ``docker --cpus=2``) and divided among the processes of
   this node when ``LOCAL_WORLD_SIZE`` says there are several.

torch's own default is the machine's physical cores, which oversubscribes a process confined to
fewer of them. Neither can see the load of *other* processes on cores this process may use: on
a shared machine set ``threads`` to the cores that are free (README, "Speed").
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, NamedTuple

import torch

__all__ = ["ThreadChoice", "resolve_threads", "apply_threads", "allowed_cpus", "cpu_quota"]

_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


class ThreadChoice(NamedTuple):
    """The thread count of a run and where it came from.

    Attributes:
        threads: torch's intra-op threads (>= 1).
        source: ``"config"`` (``threads = N``), ``"OMP_NUM_THREADS"``, ``"affinity"`` (the CPUs
            the process may use), ``"cgroup quota"`` (a CPU quota below them) or either of the
            last two followed by ``" / LOCAL_WORLD_SIZE"``.
        cpus_allowed: CPUs in the process's affinity mask (``os.cpu_count()`` where there is none).
    """

    threads: int
    source: str
    cpus_allowed: int

    def __str__(self) -> str:
        plural = "s" * (self.threads != 1)
        return f"{self.threads} CPU thread{plural} (from {self.source}; {self.cpus_allowed} allowed)"

    def as_attrs(self) -> dict:
        """JSON-ready, for the store's ``runtime`` attribute."""
        return {"threads": self.threads, "threads_from": self.source, "cpus_allowed": self.cpus_allowed}


def cpu_quota(cpu_max: Path = _CPU_MAX) -> int | None:
    """CPUs a cgroup v2 quota allows (rounded up), or None without a quota (``max``) or file."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def allowed_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where the OS has none)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - macOS, Windows


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def resolve_threads(requested: int, environ: Mapping[str, str], cpus_allowed: int, quota: int | None) -> ThreadChoice:
    """The thread count for ``threads = requested`` (see the module docstring); pure.

    Args:
        requested: the config's ``threads``: N >= 1, or 0 for the cores this process may use.
        environ: the environment (``OMP_NUM_THREADS``, ``LOCAL_WORLD_SIZE``).
        cpus_allowed: CPUs of the process's affinity mask.
        quota: CPUs of its cgroup quota, None for none (:func:`cpu_quota`).
    """
    if requested > 0:
        return ThreadChoice(requested, "config", cpus_allowed)
    omp = _positive_int(environ.get("OMP_NUM_THREADS"))
    if omp is not None:
        return ThreadChoice(omp, "OMP_NUM_THREADS", cpus_allowed)
    count, source = cpus_allowed, "affinity"
    if quota is not None and quota < count:
        count, source = quota, "cgroup quota"
    local = _positive_int(environ.get("LOCAL_WORLD_SIZE"))
    if local is not None and local > 1:
        count, source = count // local, f"{source} / LOCAL_WORLD_SIZE"
    return ThreadChoice(max(1, count), source, cpus_allowed)


def apply_threads(requested: int) -> ThreadChoice:
    """Resolve ``threads = requested`` on this machine and set torch's intra-op thread count to it."""
    choice = resolve_threads(requested, os.environ, allowed_cpus(), cpu_quota())
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice
