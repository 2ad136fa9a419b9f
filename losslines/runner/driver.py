"""``run(cfg)``: the whole of ``losslines run`` — build the parts, open the store, train, close.

With ``measure.mode = "record"`` the run writes a recording instead of a store
(``runner.recording``): the same training, the scheduled lines recorded for ``losslines measure``.

``run(cfg, resume=True)`` continues a stopped run from its last checkpoint so that the store ends
up exactly as if the run had never stopped. Under ``torchrun`` the processes share the run
(``runner.distributed``); a resume may use another number of processes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from losslines.runner.attrs import store_attrs
from losslines.runner.checkpoint import check_resumable, checkpoint_dir, load_checkpoint
from losslines.runner.config import ConfigError, RunConfig, config_to_dict
from losslines.runner.distributed import RankSink, init_ranks, release_ranks
from losslines.runner.loop import TrainingLoop, restore
from losslines.runner.parts import build_parts, build_sampler
from losslines.runner.progress import Progress
from losslines.runner.recording import Recorder, RecordingWriter
from losslines.runner.threads import ThreadChoice
from losslines.runner.tensorboard import TENSORBOARD_MISSING, TensorBoardSink, tensorboard_installed
from losslines.store import StoreSink
from losslines.store.group import lines_committed
from losslines.store.stall import WriterStall

log = logging.getLogger(__name__)

__all__ = ["RunResult", "run"]


@dataclass(frozen=True)
class RunResult:
    """What a run did.

    Attributes:
        store_path: the zarr store written.
        status: ``complete``, ``interrupted`` (a checkpoint was saved; resume with ``--resume``) or
            ``nonfinite`` (``train.on_nonfinite = "stop"``: the last step's training loss, update
            or line held NaN or ±inf; its line is stored as measured, the store closed ``failed``).
        steps: training steps done in total (including those before a resume).
        lines: lines committed to the store in total.
        wall_s: wall time of this invocation in seconds.
        reason: why a ``nonfinite`` run stopped, naming the step and the value ("" otherwise).
        threads: torch's CPU threads in this invocation and where the count came from.
        writer_stall: how long the store writer held up training and measuring in this
            invocation (process 0; None elsewhere and for a recording).
    """

    store_path: Path | str
    status: str
    steps: int
    lines: int
    wall_s: float
    reason: str = ""
    threads: ThreadChoice | None = None
    writer_stall: WriterStall | None = None


def run(cfg: RunConfig, *, resume: bool = False, progress: bool = True, stop_at_step: int | None = None,
        on_step: Callable[[int], None] | None = None) -> RunResult:
    """Train on ``cfg`` and measure lines along the update directions into a store.

    Args:
        cfg: the validated run config.
        resume: continue from the checkpoint beside the store instead of starting anew.
        progress: show a progress bar (steps, lines, lines/s, loss) on stderr.
        stop_at_step: stop (as if interrupted) before this step, after a checkpoint; for tests
            and for running a study in slices.
        on_step: called with each step number after the step is taken (tests, monitoring).

    Raises:
        ValueError / FileNotFoundError / FileExistsError: bad config, missing dataset, a store
            that already exists (without ``resume``), a path that holds something other than a
            store (never written to, with or without ``resume``), a checkpoint of a different config
            or one that is not only tensors and plain data. A refused setting leaves no store behind.
    """
    t0 = time.perf_counter()
    ranks = init_ranks(cfg.device)  # one process, or those torchrun started (runner.distributed)
    try:
        return _run(cfg, ranks, resume=resume, progress=progress, stop_at_step=stop_at_step, on_step=on_step, t0=t0)
    finally:
        release_ranks(ranks)


def _run(cfg: RunConfig, ranks, *, resume: bool, progress: bool, stop_at_step: int | None,
         on_step: Callable[[int], None] | None, t0: float) -> RunResult:
    store_path = cfg.store_location
    ckpt_dir = checkpoint_dir(store_path)
    what = "recording" if cfg.measure.mode == "record" else "store"
    if ranks.any(ranks.is_main and store_path.exists() and not store_path.is_zarr_group()):
        raise FileExistsError(f"{store_path} exists and is not a losslines {what}; it is left untouched: "
                              "choose another --out")
    unwritable: OSError | None = None
    if ranks.is_main:  # an output that cannot be written is found before any data is loaded
        try:
            store_path.check_writable()
        except OSError as err:
            unwritable = err
    if ranks.any(unwritable is not None):  # every process stops, not only process 0
        raise unwritable or PermissionError(f"process 0 cannot write {store_path}")
    if ranks.any(ranks.is_main and not resume and store_path.exists()):
        raise FileExistsError(f"{what} {store_path} already exists; pass --resume to continue it or --out for a new path")
    if cfg.measure.mode == "record" and ranks.sharded:  # before any data is loaded
        raise ValueError("measure.mode = 'record' runs in one process (recording is cheap); measure the "
                         "recording with several: torchrun ... -m losslines measure RECORDING --out STORE")
    if ranks.any(ranks.is_main and bool(cfg.store.tensorboard) and not tensorboard_installed()):
        raise ConfigError(TENSORBOARD_MISSING)  # before any data is loaded
    if resume and ranks.any(ranks.is_main and _killed_before_first_checkpoint(store_path, ckpt_dir)):
        if ranks.is_main:  # nothing was measured: a resume is a new start
            log.warning("%s: the run stopped before its first checkpoint, having measured nothing; starting it "
                        "anew", store_path)
            store_path.remove()
        ranks.barrier()
        resume = False
    parts = build_parts(cfg, ranks)
    start = 0
    state = None
    if resume:
        state = load_checkpoint(ckpt_dir)
        check_resumable(state, config_to_dict(cfg), ckpt_dir)
        restore(parts, state)
        start = state.step
    if cfg.measure.mode == "record":  # record what each line needs; `losslines measure` measures it
        build_sampler(parts, None)  # validates the measurement settings before anything is written
        sink = (RecordingWriter.resume(store_path, at_line=state.committed_lines) if state is not None else
                RecordingWriter.create(store_path, model=parts.model, batch_size=cfg.train.batch_size,
                                       attrs=store_attrs(parts), capacity=parts.planned_lines))
        sampler = Recorder(parts.model, parts.schedule, sink)
    else:
        # only process 0 creates or reopens the store: the others would find it created already
        sink = _store_sink(cfg, parts, state) if ranks.is_main else None
        if ranks.sharded:
            sink = RankSink(ranks, sink, store_path)
        if cfg.store.tensorboard and ranks.is_main:  # tees the lines into a TensorBoard log, closed below
            sink = TensorBoardSink(sink, cfg.tensorboard_dir, purge_step=start)
        sampler = build_sampler(parts, sink)  # validates the measurement, then creates / reopens the store
    if ranks.is_main:
        log.info("torch uses %s", parts.threads)
    try:
        loop = TrainingLoop(parts, sampler, sink, checkpoint_dir=ckpt_dir, on_step=on_step,
                            progress=Progress(progress and ranks.is_main, total=cfg.train.steps, initial=start,
                                              desc=cfg.name, quiet=not ranks.is_main,
                                              total_measured=parts.planned_lines,
                                              initial_measured=state.committed_lines if state is not None else 0))
        if state is not None:
            loop.restore_nonfinite(state)
        status, steps = loop.run(start, stop_at_step)
    finally:
        if isinstance(sink, TensorBoardSink):
            sink.close()
    stall = getattr(sink.writer, "stall", None) if ranks.is_main else None  # a StoreWriter's (not a recording's)
    return RunResult(store_path=cfg.store_path, status=status, steps=steps, lines=sink.writer.committed_lines,
                     wall_s=time.perf_counter() - t0, reason=str(loop.nonfinite or ""), threads=parts.threads,
                     writer_stall=stall)


def _killed_before_first_checkpoint(store_path, ckpt_dir) -> bool:
    """A store (or recording) without a checkpoint and without a committed line: a run killed
    between creating its store and its first checkpoint (taken before the first step)."""
    return (store_path.is_zarr_group() and not (ckpt_dir / "latest.pt").exists()
            and lines_committed(store_path) == 0)


def _store_sink(cfg: RunConfig, parts, state) -> StoreSink:
    """The sink of process 0: a new store, or the stopped one reopened at the checkpoint ``state``."""
    s = cfg.store
    if state is not None:
        return StoreSink.resume(cfg.store_location, at_line=state.committed_lines, max_queued_lines=s.max_queued_lines,
                                commit_every=s.commit_every,
                                at_direction_line=state.committed_direction_lines if cfg.measure.n_directions else None,
                                at_step=state.committed_steps if cfg.measure.per_step else None)
    return StoreSink.create(cfg.store_location, sample_ids=parts.sample_ids, attrs=store_attrs(parts),
                            sample_dtype=cfg.measure.sample_dtype, n_directions=cfg.measure.n_directions,
                            line_chunk=s.line_chunk, sample_block=s.sample_block, capacity=parts.planned_lines,
                            max_queued_lines=s.max_queued_lines, directions_capacity=len(cfg.measure.directions_at),
                            commit_every=s.commit_every)
