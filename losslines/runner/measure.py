"""``losslines measure RECORDING --out STORE``: the lines of a recording, measured line-parallel.

A run with ``measure.mode = "record"`` trains and records what each scheduled line needs
(``runner.recording``). This measures them into a store, as the run's config says (grid,
splits, BatchNorm semantics, strategy, dtypes): with one process, or under ``torchrun`` with
any number, each process measuring whole lines — process ``r`` of ``W`` takes lines ``r``,
``r + W``, ... — and sending its records to process 0, which appends them in order. No process
trains; every one holds the measurement sets and one line at a time. The store equals the one
the config measures inline, line for line, bit for bit (with a fixed strategy; ``auto`` times the
strategies on the first line and may choose differently, which changes the last float32 bits).

An interrupted measurement (Ctrl-C, SIGTERM) stops after the lines in flight, commits them and
exits 130; ``--resume`` continues it after the store's committed lines.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from contextlib import nullcontext
from typing import Mapping

import torch

from losslines.engine.directions import Direction
from losslines.records import LineRecord
from losslines.runner.attrs import store_attrs
from losslines.runner.config import RunConfig, parse_config
from losslines.runner.distributed import SINGLE, Ranks, init_ranks, release_ranks
from losslines.runner.driver import RunResult
from losslines.runner.nonfinite import is_nonfinite_line
from losslines.runner.parts import RunParts, build_parts, build_sampler
from losslines.runner.progress import Progress
from losslines.runner.recording import RecordedLine, RecordingReader
from losslines.runner.signals import InterruptBetweenSteps
from losslines.store import StoreSink
from losslines.store.location import Location
from losslines.store.reader import open_store

log = logging.getLogger(__name__)

__all__ = ["measure_recording"]


def measure_recording(recording: str | os.PathLike[str] | Location, out: str | os.PathLike[str] | Location, *,
                      resume: bool = False, progress: bool = True, device: str | None = None,
                      threads: int = 0, storage_options: Mapping | None = None) -> RunResult:
    """Measure the committed lines of ``recording`` into the store ``out`` (see the module docstring).

    Args:
        recording: a recording (path or fsspec URL) written by ``measure.mode = "record"``.
        out: the new store (or the stopped one, with ``resume``).
        resume: continue a stopped measurement after its committed lines.
        progress: a progress bar on stderr (process 0).
        device: ``cpu``, ``cuda`` or ``auto`` instead of the recorded config's.
        threads: CPU threads per process; 0: ``OMP_NUM_THREADS`` if set (torchrun sets it to
            1), else the cores this process may use (``runner.threads``). The recorded config's
            ``threads`` belongs to the machine that recorded and is not used: N processes of all
            the cores each would oversubscribe them.
        storage_options: fsspec options of ``out`` (default: the recorded config's).

    Raises:
        FileNotFoundError / ValueError / FileExistsError: no recording there, or not one; ``out``
            exists (without ``resume``), holds something other than a store (never written to), or
            holds other lines than the recording's.
    """
    t0 = time.perf_counter()
    rec = RecordingReader(recording)
    table = dict(rec.config)
    table["store"] = {**table["store"], "path": str(out)}
    if storage_options is not None:
        table["store"]["storage_options"] = dict(storage_options)
    if device is not None:
        table["device"] = device
    table["threads"] = int(threads)
    table["measure"] = {**table["measure"], "mode": "inline"}  # the store holds lines measured from θ_t
    cfg = parse_config(table)
    ranks = init_ranks(cfg.device)
    try:
        return _measure(rec, cfg, ranks, resume=resume, progress=progress, t0=t0)
    finally:
        release_ranks(ranks)


def _measure(rec: RecordingReader, cfg: RunConfig, ranks: Ranks, *, resume: bool, progress: bool,
             t0: float) -> RunResult:
    out = cfg.store_location
    if ranks.any(ranks.is_main and out.exists() and not out.is_zarr_group()):
        raise FileExistsError(f"{out} exists and is not a losslines store; it is left untouched: choose another --out")
    if ranks.any(ranks.is_main and not resume and out.exists()):
        raise FileExistsError(f"store {out} already exists; pass --resume to continue it or --out for a new path")
    # every process builds the measurement sets whole: it measures whole lines (nothing is sharded)
    parts = dataclasses.replace(build_parts(cfg, ranks), ranks=SINGLE)
    sink = _sink(rec, cfg, parts, resume) if ranks.is_main else None
    failed = None
    try:
        sampler = build_sampler(parts, sink)  # validates, then process 0 creates / reopens the store
        start = _check_resumed(rec, sink.writer.committed_lines, out) if ranks.is_main and resume else 0
    except Exception as err:  # noqa: BLE001 - told to every process, raised below
        failed = err
    if ranks.any(failed is not None):
        raise failed if failed is not None else RuntimeError(f"process 0 could not open the store {out}; see its error")
    start = ranks.broadcast_int(start)
    if ranks.is_main:
        log.info("torch uses %s", parts.threads)
    n, world = len(rec), ranks.world
    bar = Progress(progress and ranks.is_main, total=n, initial=start, desc=cfg.name, quiet=not ranks.is_main,
                   unit="line")
    source = parts.stepper.source  # the plain-SGD slope check applies as in the inline run
    parts.model.train()
    strategy_recorded, done = False, start
    # the non-finite lines (a diverged run's), flagged as an inline run flags them (runner.nonfinite)
    nonfinite_steps = _nonfinite_before(out, rec, start) if ranks.is_main and resume else []
    with (sink.writer if ranks.is_main else nullcontext()), InterruptBetweenSteps() as interrupt:
        try:
            if ranks.is_main:
                sink.writer.update_attrs({"nonfinite_steps": nonfinite_steps})
            for first in range(start, n, world):
                if ranks.any(interrupt.requested):
                    raise KeyboardInterrupt
                i = first + ranks.rank
                record = _measure_line(sampler, parts, rec.line(i, parts.device), source) if i < n else None
                gathered = ranks.gather(record)
                if ranks.is_main:
                    for r in gathered:
                        if r is not None:
                            sink.append(r)
                            if is_nonfinite_line(r, parts.grid.zero_index):
                                nonfinite_steps.append(int(r.step))
                                sink.writer.update_attrs({"nonfinite_steps": nonfinite_steps})
                    if not strategy_recorded and sampler.strategy_report is not None:
                        sink.writer.update_attrs({"strategy_report": sampler.strategy_report.as_attrs()})
                        strategy_recorded = True
                    bar.step(measured=True, lines=sink.writer.committed_lines + sink.writer.pending_lines,
                             loss=gathered[0]["train"].loss[parts.grid.zero_index])
                done = min(n, first + world)
        except KeyboardInterrupt:
            if ranks.is_main:
                by = f" by {interrupt.signal_name}" if interrupt.signal_name else ""
                sink.writer.close(status="failed", reason=f"interrupted{by} after {done} of {n} lines; continue "
                                                          "with losslines measure ... --resume")
            bar.log(f"interrupted after {done} of {n} lines, which are committed: run the same command with "
                    "--resume to continue")
            return RunResult(store_path=cfg.store_path, status="interrupted", steps=done, lines=done,
                             wall_s=time.perf_counter() - t0)
        finally:
            bar.close()
    return RunResult(store_path=cfg.store_path, status="complete", steps=n, lines=n,
                     wall_s=time.perf_counter() - t0, threads=parts.threads,
                     writer_stall=sink.writer.stall if ranks.is_main else None)


def _sink(rec: RecordingReader, cfg: RunConfig, parts: RunParts, resume: bool) -> StoreSink:
    s, m = cfg.store, cfg.measure
    if resume:
        return StoreSink.resume(cfg.store_location, max_queued_lines=s.max_queued_lines, commit_every=s.commit_every)
    attrs = {**store_attrs(parts), "measured_from_recording": str(rec.path)}
    return StoreSink.create(cfg.store_location, sample_ids=parts.sample_ids, attrs=attrs, sample_dtype=m.sample_dtype,
                            line_chunk=s.line_chunk, sample_block=s.sample_block, capacity=len(rec),
                            max_queued_lines=s.max_queued_lines, commit_every=s.commit_every)


def _check_resumed(rec: RecordingReader, committed: int, out: Location) -> int:
    """The line to resume at; refuses a store whose lines are not the recording's first ones."""
    steps = open_store(out)["step"][:committed]
    if committed > len(rec) or list(steps) != list(rec.steps()[:committed]):
        raise ValueError(f"store {out} holds {committed} lines that are not the first lines of the recording "
                         f"{rec.path}; measure into a new store")
    return committed


def _nonfinite_before(out: Location, rec: RecordingReader, committed: int) -> list[int]:
    """The store's ``nonfinite_steps`` among its committed lines (a resumed measurement)."""
    kept = set(int(t) for t in rec.steps()[:committed])
    return [int(t) for t in open_store(out).attrs.get("nonfinite_steps") or [] if int(t) in kept]


def _measure_line(sampler, parts: RunParts, line: RecordedLine, source) -> LineRecord:
    with torch.no_grad():  # the frozen parameters at θ_t (the trainable ones are passed to the evaluation)
        for name, value in line.frozen.items():
            parts.model.get_parameter(name).copy_(value)
    direction = Direction(vector=line.direction, update_step=line.update_step, direction_norm=line.direction_norm,
                          lr=line.lr)
    return sampler.measure_direction(line.step, direction, theta=line.theta, buffers=line.buffers, batch=line.batch,
                                     batch_ids=line.batch_ids, epoch=line.epoch, trained_bn=line.trained_bn,
                                     source=source)
