"""The driver behind ``losslines run``: train on a config, measure lines on its schedule.

``run(cfg)`` builds the dataset and model from the registries, trains with the configured
optimizer and learning-rate schedule, measures every scheduled step with a
:class:`~losslines.engine.sampler.LineSampler`, streams the lines into a v1 store and saves
checkpoints. ``run(cfg, resume=True)`` continues a stopped run from its last checkpoint so that
the store ends up exactly as if the run had never stopped.
"""

from __future__ import annotations

import math
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from losslines._version import __version__
from losslines.config import RunConfig, TrainConfig, config_to_dict, memory_budget
from losslines.engine.all_directions import measure_all_directions
from losslines.engine.checkpoint import (
    TrainingState,
    checkpoint_dir,
    global_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_global_rng_state,
)
from losslines.engine.directions import SGDDirection
from losslines.engine.grid import make_grid
from losslines.engine.sampler import LineSampler
from losslines.engine.schedule import Schedule

__all__ = ["RunResult", "run", "lr_at", "make_schedule"]


@dataclass(frozen=True)
class RunResult:
    """What a run did.

    Attributes:
        store_path: the zarr store written.
        status: ``complete`` or ``interrupted`` (a checkpoint was saved; resume with ``--resume``).
        steps: training steps done in total (including those before a resume).
        lines: lines committed to the store in total.
        wall_s: wall time of this invocation in seconds.
    """

    store_path: Path
    status: str
    steps: int
    lines: int
    wall_s: float


def lr_at(train: TrainConfig, step: int) -> float:
    """Learning rate λ at ``step`` under the configured schedule."""
    if train.lr_schedule == "constant":
        return train.lr
    if train.lr_schedule == "step":
        return train.lr * train.lr_gamma ** sum(step >= m for m in train.lr_milestones)
    if train.lr_schedule == "cosine":
        return 0.5 * train.lr * (1.0 + math.cos(math.pi * step / train.steps))
    raise ValueError(f"unknown lr_schedule {train.lr_schedule!r}")


def make_schedule(cfg: RunConfig) -> Schedule:
    """The measurement schedule of a config."""
    m = cfg.measure
    if m.schedule == "every":
        return Schedule.every(m.every, offset=m.offset)
    if m.schedule == "log":
        return Schedule.log_spaced(m.count, cfg.train.steps)
    return Schedule.explicit(m.at)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("config key 'device': 'cuda' requested but no CUDA device is available; use device = 'cpu'")
    return torch.device(name)


class _Stepper:
    """The training step: the losslines SGD direction or a torch optimizer, one interface."""

    def __init__(self, cfg: RunConfig, model: torch.nn.Module):
        t = cfg.train
        self.sgd: SGDDirection | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        if cfg.measure.direction == "sgd":
            self.sgd = SGDDirection(model, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        elif t.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum,
                                             nesterov=t.nesterov, weight_decay=t.weight_decay)
        elif t.optimizer == "adam":
            self.optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, betas=tuple(t.betas),
                                              weight_decay=t.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=tuple(t.betas),
                                               weight_decay=t.weight_decay)

    @property
    def source(self):
        return self.sgd if self.sgd is not None else self.optimizer

    def set_lr(self, lr: float) -> None:
        if self.sgd is not None:
            self.sgd.lr = lr
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def zero_grad(self, model: torch.nn.Module) -> None:
        model.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.sgd is not None:
            self.sgd.step()
        else:
            self.optimizer.step()

    def state_dict(self) -> dict:
        return self.source.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state)


# Keys that may differ on --resume: where the data lives and how the writer queues, not what is measured.
RESUMABLE_CHANGES = frozenset({"data.root", "data.download", "store.max_queued_lines"})


def _has_active_dropout(model: torch.nn.Module) -> bool:
    """Training with dropout differentiates another function than the (dropout-free) measurement."""
    from torch.nn.modules.dropout import _DropoutNd

    return any(isinstance(m, _DropoutNd) and m.p > 0 for m in model.modules())


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out


def _log(message: str, bar) -> None:
    """One line on stderr that does not break the progress bar."""
    if bar is not None:
        bar.write(f"losslines: {message}", file=sys.stderr)
    else:
        print(f"losslines: {message}", file=sys.stderr)


class _InterruptBetweenSteps:
    """Defer Ctrl-C to the next step boundary, so a checkpoint is always taken between steps.

    The first SIGINT only sets ``requested``; the loop checks it before each step. A second
    SIGINT aborts at once (the store keeps its committed lines; resume from the last periodic
    checkpoint). Outside the main thread signals cannot be caught, and nothing is installed.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_InterruptBetweenSteps":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _store_attrs(cfg: RunConfig, dataset, model: torch.nn.Module, grid) -> dict:
    import zarr

    return {
        "config": config_to_dict(cfg),
        "semantics": {
            "direction": cfg.measure.direction,
            "bn": cfg.measure.bn,
            "bn_group": cfg.measure.bn_group,
            "loss": cfg.measure.loss,
            "strategy": cfg.measure.strategy,
            "dropout": "off",
            "accumulation": "float64",
            "slopes": "exact (torch.func.jvp)",
            "position": "distance along the unit update direction",
            "batch_measured_on": "the (augmented) inputs that defined the direction",
            "buffers": "BatchNorm running statistics as the step found them (after step t's training forward)",
            "sgd_slope_check": "off: training uses dropout, the measurement evaluates it as the identity"
            if _has_active_dropout(model) else "on where it applies (plain SGD without weight decay)",
        },
        "grid": {
            "spacing": grid.spacing,
            "half_width": grid.half_width,
            "max_enlargements": grid.max_enlargements,
            "n_points": grid.n_points,
        },
        "dataset": {
            "name": dataset.name,
            "num_classes": dataset.num_classes,
            "input_shape": list(dataset.input_shape),
            "n_train": len(dataset.train),
            "n_val": len(dataset.val),
            "normalization": dataset.normalization,
            "source": dataset.source,
        },
        "model": {
            "name": cfg.model.name,
            "width": cfg.model.width,
            "n_parameters": sum(p.numel() for p in model.parameters()),
        },
        "versions": {
            "losslines": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "zarr": zarr.__version__,
            "python": platform.python_version(),
        },
    }


def run(
    cfg: RunConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at_step: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> RunResult:
    """Train on ``cfg`` and measure lines along the update directions into a store.

    Args:
        cfg: the validated run config.
        resume: continue from the checkpoint beside the store instead of starting anew.
        progress: show a tqdm bar (steps, lines, lines/s, ETA) on stderr.
        stop_at_step: stop (as if interrupted) before this step, after a checkpoint; for tests
            and for running a study in slices.
        on_step: called with each step number after the step is taken (tests, monitoring).

    Returns:
        A :class:`RunResult`.

    Raises:
        ValueError / FileNotFoundError / FileExistsError: bad config, missing dataset, a store
            that already exists (without ``resume``) or a checkpoint of a different config.
    """
    from losslines.data import augment_batch, load_dataset
    from losslines.models import build_model
    from losslines.store import StoreLayout, StoreWriter

    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _resolve_device(cfg.device)
    store_path = cfg.store_path
    ckpt_dir = checkpoint_dir(store_path)
    if not resume and store_path.exists():
        raise FileExistsError(f"store {store_path} already exists; pass --resume to continue it or --out for a new path")

    dataset = load_dataset(
        cfg.data.name, root=cfg.data.root or None, fraction=cfg.data.fraction, n_val=cfg.data.n_val,
        seed=cfg.data.seed, normalize=cfg.data.normalize, download=cfg.data.download, **cfg.data.options,
    )
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, num_classes=dataset.num_classes, input_shape=dataset.input_shape,
                        width=cfg.model.width, **cfg.model.options).to(device)
    stepper = _Stepper(cfg, model)

    t = cfg.train
    n_train = len(dataset.train)
    steps_per_epoch = n_train // t.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"config key 'train.batch_size': {t.batch_size} exceeds the {n_train} training samples")
    n_meas = cfg.measure.n_train or n_train
    if n_meas > n_train:
        raise ValueError(f"config key 'measure.n_train': {n_meas} exceeds the {n_train} training samples")

    train_x = dataset.train.inputs.to(device)
    train_y = dataset.train.targets.to(device)
    train_ids = dataset.train.ids
    val = (dataset.val.inputs.to(device), dataset.val.targets.to(device)) if len(dataset.val) else None
    grid = make_grid(cfg.measure.spacing, cfg.measure.half_width, cfg.measure.max_enlargements)
    schedule = make_schedule(cfg)
    planned_lines = len(schedule.steps(t.steps))

    layout = StoreLayout(
        n_points=grid.n_points, n_train=n_meas, n_val=len(dataset.val), batch_size=t.batch_size,
        sample_losses=tuple(s for s in ("train", "val", "batch") if s in cfg.measure.sample_losses),
        sample_dtype=cfg.measure.sample_dtype, line_chunk=cfg.store.line_chunk,
        sample_block=cfg.store.sample_block, n_directions=cfg.measure.n_directions,
    )
    # Built before the store is touched: a setting the evaluator refuses leaves nothing behind.
    sampler = LineSampler(
        model, grid=grid, schedule=schedule, train=(train_x[:n_meas], train_y[:n_meas]), val=val,
        bn=cfg.measure.bn, bn_group=cfg.measure.bn_group, loss=cfg.measure.loss,
        sample_losses=layout.sample_losses, sink=None, strategy=cfg.measure.strategy,
        batch_size=t.batch_size, memory_budget=memory_budget(cfg.measure),
        check_sgd_slope=not _has_active_dropout(model),
    )
    order_gen = torch.Generator().manual_seed(cfg.seed * 7919 + 1)
    augment_gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + 2)
    resolved = config_to_dict(cfg)

    if resume:
        state = load_checkpoint(ckpt_dir)
        changed = [k for k in _config_differences(state.config, resolved) if k not in RESUMABLE_CHANGES]
        if changed:
            raise ValueError(f"checkpoint in {ckpt_dir} belongs to a different config (changed: {', '.join(changed)}); "
                             "resume with the same config and --set values, or start a new store")
        model.load_state_dict(state.model)
        stepper.load_state_dict(state.stepper)
        order_gen.set_state(state.generators["order"])
        augment_gen.set_state(state.generators["augment"])
        set_global_rng_state(state.global_rng)
        writer = StoreWriter.resume(store_path, at_line=state.committed_lines,
                                    at_direction_line=state.committed_direction_lines if layout.n_directions else None,
                                    max_queued_lines=cfg.store.max_queued_lines)
        start_step, epoch_order = state.step, state.epoch_order
    else:
        writer = StoreWriter.create(
            store_path, layout, positions=grid.positions,
            sample_ids={"train": train_ids[:n_meas].numpy(), "val": dataset.val.ids.numpy()},
            attrs=_store_attrs(cfg, dataset, model, grid), capacity=planned_lines,
            max_queued_lines=cfg.store.max_queued_lines,
        )
        start_step, epoch_order = 0, torch.randperm(n_train, generator=order_gen)

    sampler.sink = writer.append

    def checkpoint(next_step: int) -> None:
        writer.flush()
        save_checkpoint(ckpt_dir, TrainingState(
            step=next_step, committed_lines=writer.committed_lines, epoch=next_step // steps_per_epoch,
            epoch_order=epoch_order, model=model.state_dict(), stepper=stepper.state_dict(),
            generators={"order": order_gen.get_state(), "augment": augment_gen.get_state()},
            global_rng=global_rng_state(), config=resolved,
            committed_direction_lines=writer.committed_direction_lines if layout.n_directions else 0,
        ))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=t.steps, initial=start_step, unit="step", desc=cfg.name, dynamic_ncols=True)
    directions_at = frozenset(cfg.measure.directions_at)
    strategy_recorded = False  # a resumed run times `auto` again and records it again
    lines_here, loop_t0 = 0, time.perf_counter()
    step = start_step
    status = "interrupted"
    between_steps = True
    with writer, _InterruptBetweenSteps() as interrupt:
        try:
            for step in range(start_step, t.steps):
                between_steps = True
                if interrupt.requested or (stop_at_step is not None and step >= stop_at_step):
                    raise KeyboardInterrupt
                between_steps = False
                epoch, slot = divmod(step, steps_per_epoch)
                if slot == 0 and step > 0:  # a resume at an epoch boundary draws that epoch's order too
                    epoch_order = torch.randperm(n_train, generator=order_gen)
                idx = epoch_order[slot * t.batch_size:(slot + 1) * t.batch_size]
                xb, yb = train_x[idx.to(device)], train_y[idx.to(device)]
                if cfg.data.augment != "none":
                    xb = augment_batch(xb, cfg.data.augment, augment_gen)
                stepper.set_lr(lr_at(t, step))
                model.train()
                stepper.zero_grad(model)
                out = model(xb)
                if cfg.measure.loss == "cross_entropy":
                    loss = F.cross_entropy(out, yb)
                else:  # one-hot targets, the same convention as the evaluator's mse on class labels
                    loss = F.mse_loss(out, F.one_hot(yb, dataset.num_classes).to(out.dtype))
                loss.backward()
                if step in directions_at:  # before the step: the model holds θ_t
                    writer.append_directions(measure_all_directions(
                        sampler, step, epoch=epoch, lr=lr_at(t, step), train=(train_x, train_y), train_ids=train_ids,
                        batch_size=t.batch_size, count=cfg.measure.n_directions,
                        seed=cfg.seed * 1_000_003 + step, loss=cfg.measure.loss))
                measured = sampler.should_measure(step)
                with sampler.measure(step, stepper.source, batch=(xb, yb), batch_ids=train_ids[idx].numpy(),
                                     epoch=epoch):
                    stepper.step()
                lines_here += int(measured)
                if measured and not strategy_recorded and sampler.strategy_report is not None:
                    report = sampler.strategy_report.as_attrs()
                    writer.update_attrs({"strategy_report": report})
                    strategy_recorded = True
                    if report["requested"] == "auto":
                        timings = ", ".join(f"{k} {v * 1e3:.2f} ms/point" for k, v in report["seconds_per_point"].items())
                        _log(f"strategy auto chose {report['chosen']} ({timings})", bar)
                if on_step is not None:
                    on_step(step)
                if bar is not None:
                    rate = lines_here / max(time.perf_counter() - loop_t0, 1e-9)
                    bar.set_postfix(lines=writer.committed_lines + writer.pending_lines, lines_s=f"{rate:.2f}",
                                    loss=f"{loss.item():.3f}", refresh=False)
                    bar.update(1)
                if t.checkpoint_every and (step + 1) % t.checkpoint_every == 0 and step + 1 < t.steps:
                    checkpoint(step + 1)
                between_steps = True
            else:
                step = t.steps
                status = "complete"
        except KeyboardInterrupt:
            if between_steps:  # the state is consistent: checkpoint it
                checkpoint(step)
                writer.close(status="failed", reason=f"interrupted before step {step}; continue with --resume")
            else:  # a second Ctrl-C inside a step: the last periodic checkpoint stays the one to resume
                writer.close(status="failed", reason=f"aborted during step {step}; --resume continues from "
                                                     "the last checkpoint")
        else:
            checkpoint(t.steps)
        finally:
            if bar is not None:
                bar.close()
    return RunResult(store_path=store_path, status=status, steps=step, lines=writer.committed_lines,
                     wall_s=time.perf_counter() - t0)
