"""Several processes for one run (``torchrun --nproc_per_node=N -m losslines run CONFIG``): the
measurement sets sharded over the processes, one line at a time.

* **Processes.** ``torchrun`` (on one node, or across nodes with its rendezvous) starts the
  processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
  :func:`init_ranks` joins them into a ``torch.distributed`` group (``nccl`` on CUDA, one GPU per
  local rank; ``gloo`` on CPU) with a timeout (``LOSSLINES_DIST_TIMEOUT`` seconds, default 600),
  so a process that dies makes the others fail instead of waiting for ever. Without these
  variables :func:`init_ranks` returns the one-process :data:`SINGLE`.
* **Training is replicated.** Every process loads the same data, seeds the same model and takes
  the same steps, so every process holds the same θ_t bit for bit — the same θ_t as a
  one-process run (a ``DistributedDataParallel`` all-reduce of gradients would change the last
  bits of the trajectory). Measuring a line costs hundreds of forwards of the whole measurement
  set; a training step one forward and backward of one batch.
* **Measurement is sharded.** The training and held-out measurement sets are cut into contiguous
  ranges of whole BatchNorm groups (:func:`plan_shards`); each process evaluates all K points on
  its range and the K-length float64 sums and counts (and the slope) are all-reduced, so every
  process holds the line's means. The direction batch (one BatchNorm group) is measured whole in
  every process.
* **The store.** Process 0 creates or reopens it, writes the line-level arrays and its own
  columns of the per-sample arrays, and advances ``committed_lines``. The others write their
  columns with a ``losslines.store.ShardWriter``, one after another, before process 0 appends the
  line (:class:`RankSink`): a line is committed only after every process's columns of it are in
  the store, and no two processes ever write one chunk at the same time.
* **Interrupts.** Every step the processes agree whether one was interrupted (SIGINT/SIGTERM),
  so all stop before the same step; process 0 saves the checkpoint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import Tensor

from losslines.records import DirectionsRecord, LineRecord, LineShape, StepRecord
from losslines.store import StoreSink
from losslines.store.location import Location
from losslines.store.shard import ShardWriter

TIMEOUT_ENV = "LOSSLINES_DIST_TIMEOUT"


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes.

    Attributes:
        rank, world: this process's index and the number of processes.
        local_rank: its index on its node (its GPU on CUDA).
        device: the device it runs on.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def all_sum(self, t: Tensor) -> Tensor:
        """``t`` summed over the processes (returns ``t`` itself with one process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def any(self, flag: bool) -> bool:
        """Is ``flag`` true in any process? (Every process calls it.)"""
        if self.world == 1:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64, device=self.device)
        return bool(self.all_sum(t).item() > 0)

    def gather(self, obj: Any) -> list[Any] | None:
        """Process 0: ``obj`` of every process, in rank order; the others: None. (Every process
        calls it; ``obj`` is pickled, so keep it to numpy arrays and plain values.)"""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast_int(self, value: int) -> int:
        """Process 0's ``value`` in every process."""
        t = torch.tensor([float(value) if self.is_main else 0.0], dtype=torch.float64, device=self.device)
        return int(self.all_sum(t).item())

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def in_turn(self):
        """Yield once in every process, process by process (1, 2, ..., world-1, then 0), with a
        barrier between turns: a body under it runs in one process at a time."""
        for turn in [*range(1, self.world), 0]:
            if turn == self.rank:
                yield
            self.barrier()


SINGLE = Ranks()


def init_ranks(device: str) -> Ranks:
    """Join the processes ``torchrun`` started (see the module docstring), or :data:`SINGLE`.

    Args:
        device: the config's ``device``: with several processes on CUDA, each takes the GPU of
            its local rank.

    Raises:
        ValueError: several processes asked to run on ``cuda`` without one GPU each.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {rank} (local rank {local_rank}) has no GPU of its own "
                             f"({torch.cuda.device_count()} visible); start at most that many processes per node")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo",
                                timeout=timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600"))))
    return Ranks(rank=rank, world=world, local_rank=local_rank, device=dev, owns_group=owns)


def release_ranks(ranks: Ranks) -> None:
    """Leave the process group :func:`init_ranks` joined (if it created it)."""
    if ranks.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def plan_shards(n: int, world: int, unit: int) -> list[tuple[int, int]]:
    """Contiguous sample ranges ``[start, stop)``, one per process, of whole ``unit`` s (the
    BatchNorm group: a group is never split), as even as whole units allow.

    Raises:
        ValueError: fewer units than processes (a process would measure nothing).
    """
    units = math.ceil(n / unit)
    if units < world:
        raise ValueError(f"{n} samples in groups of {unit} give {units} group(s) for {world} processes; "
                         "measure more samples or start fewer processes")
    bounds = [min(n, (units * r // world) * unit) for r in range(world + 1)]
    return [(bounds[r], bounds[r + 1]) for r in range(world)]


class RankSink:
    """The sampler's sink in a run of several processes (see the module docstring).

    Args:
        ranks: this process.
        main: process 0's ``StoreSink`` (create or resume); ``None`` in the other processes.
        where: the store's location (the other processes open it once process 0 has).
    """

    def __init__(self, ranks: Ranks, main: StoreSink | None, where: Location):
        self.ranks, self._main, self._where = ranks, main, where
        self._shard: ShardWriter | None = None

    @property
    def writer(self):
        """Process 0: the store's ``StoreWriter``; the others: their ``ShardWriter``."""
        return self._main.writer if self.ranks.is_main else self._shard

    def open(self, shape: LineShape) -> None:
        """Process 0 creates or reopens the store; the others open it after it has."""
        failed = None
        if self.ranks.is_main:
            try:
                self._main.open(shape)
            except Exception as err:  # noqa: BLE001 - told to every process, raised here below
                failed = err
        if self.ranks.any(failed is not None):
            if failed is not None:
                raise failed
            raise RuntimeError(f"process 0 could not open the store {self._where}; see its error")
        if not self.ranks.is_main:
            self._shard = ShardWriter(self._where)

    def _in_turn(self, append, record) -> Any:
        result = None
        for _ in self.ranks.in_turn():  # the others write their columns, one by one; then process 0
            result = append(record)
        return result

    def append(self, record: LineRecord) -> Any:
        return self._in_turn(self.writer.append, record)

    def append_directions(self, record: DirectionsRecord) -> Any:
        return self._in_turn(self.writer.append_directions, record)

    def append_step(self, record: StepRecord) -> Any:
        return self.writer.append_step(record)
