"""The line record: what the engine emits per measured line and the store keeps.

This module is the one contract between ``losslines.engine`` (which measures, with torch) and
``losslines.store`` (which writes and reads zarr, without torch); it imports numpy only, so both
sides can depend on it and neither depends on the other (docs/design.md, "Architecture").

* :class:`LineShape` — the sizes every record of one sampler has: the grid positions, the
  samples of each split, which splits keep their per-sample losses. The store derives its
  layout from it (``losslines.store.StoreLayout.from_shape``).
* :class:`SplitLine` / :class:`LineRecord` — one measured line: for every split (``train``,
  ``val``, ``batch``) the mean loss and accuracy per grid point, the loss at the step taken,
  the exact slope at 0 and, where kept, every per-sample loss.
* :class:`DirectionsRecord` — the paper's "all directions" mode: M lines from one θ_t.
* :class:`StepRecord` — the cheap per-step mode: for every training step the loss and exact
  slope at s = 0 and the loss at the step taken, per split.
* :class:`LineSink` — what a sampler emits records into (a store sink, or any object with
  ``open`` and ``append``; a plain callable also serves).
* The plain-SGD slope rule (``sgd_slope_mismatch``): the one definition that the sampler
  enforces while measuring and ``losslines verify`` checks on a stored line.
* The non-finite line (``nonfinite_line``): the one definition of a diverged line that the run
  flags (``train.on_nonfinite``), ``losslines verify`` accepts when flagged and the analysis
  marks and leaves out.

Units: positions are distances along the unit update direction û; losses are in nats (mean over
the split's samples, accumulated in float64); slopes are nats per unit of s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

import numpy as np

SPLITS = ("train", "val", "batch")

# |slope0_batch + direction_norm| / direction_norm above this fails the plain-SGD check.
SGD_SLOPE_RTOL = 1e-3
# ... and it is not applied to a line whose batch loss at s = 0 exceeds this (nats or squared
# units): a diverged model's huge logits leave float32 jvp and backward apart by more than the
# tolerance (0.7 % at lr 999 on the quickstart), a rounding effect, not a measurement error.
SGD_CHECK_MAX_LOSS = 1e4


def sgd_slope_mismatch(slope0_batch, direction_norm, rtol: float = SGD_SLOPE_RTOL):
    """Does a plain-SGD line break ``slope0_batch == −direction_norm``? (Scalars or arrays.)

    For ``u = −λ·g`` without momentum or weight decay, the exact slope at 0 of the batch loss
    (measured in the BatchNorm mode the step was trained in) is ``−‖g‖ = −direction_norm``.
    Non-finite slopes or norms (a diverged step) cannot be judged and do not count as a mismatch.

    Returns:
        ``bool`` for scalar inputs, a boolean array for arrays.
    """
    slope = np.asarray(slope0_batch, dtype=np.float64)
    norm = np.asarray(direction_norm, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(slope) & np.isfinite(norm) & (np.abs(slope + norm) > rtol * np.abs(norm))
    return bool(bad) if bad.ndim == 0 else bad


def nonfinite_line(direction_norm, update_step, loss_at_zero: Mapping[str, object]):
    """Is a line non-finite: its ``direction_norm``, its ``update_step`` or the mean loss at s = 0
    of any split NaN or ±inf? (Scalars, or arrays over lines.)

    These are the values every line of every store has, so the flag follows from the stored data
    alone. A diverging run (too large a learning rate) makes them overflow; its values are kept
    as they are and the line is flagged. Slopes do not count: a store without exact slopes (one
    imported from the original pickles) holds NaN there by design.

    Args:
        direction_norm, update_step: ``‖u‖/λ`` and ``‖u‖``, ``[L]`` or scalars.
        loss_at_zero: ``{split: mean loss at s = 0}``, each ``[L]`` or a scalar (nats).

    Returns:
        ``bool`` for scalar inputs, a boolean array ``[L]`` for arrays.
    """
    values = [np.asarray(v, dtype=np.float64) for v in (direction_norm, update_step, *loss_at_zero.values())]
    bad = np.zeros(np.broadcast_shapes(*(v.shape for v in values)), dtype=bool)
    for v in values:
        bad |= ~np.isfinite(v)
    return bool(bad) if bad.ndim == 0 else bad


@dataclass(frozen=True)
class LineShape:
    """The sizes shared by every record of one sampler.

    Attributes:
        positions: ``[K]`` float64 grid (distance along û), enlargement rings included.
        n_samples: samples per split, ``{"train": N, "val": N_val, "batch": B}``; a split that
            is not measured is absent (or 0). For ``batch`` it is the number of slots: smaller
            batches are padded.
        sample_losses: the splits whose per-sample losses every record carries, in
            ``SPLITS`` order.
        per_step: the sampler also emits a ``StepRecord`` at every training step.
        interpolation: lines are reconstructed from Chebyshev nodes (``nodes="chebyshev"``):
            every record carries ``interpolated`` and each split its interpolation errors.
    """

    positions: np.ndarray
    n_samples: Mapping[str, int]
    sample_losses: tuple[str, ...] = ()
    per_step: bool = False
    interpolation: bool = False

    def __post_init__(self) -> None:
        pos = np.asarray(self.positions, dtype=np.float64)
        if pos.ndim != 1 or pos.size == 0:
            raise ValueError(f"LineShape.positions must be a non-empty 1-D array, got shape {pos.shape}")
        object.__setattr__(self, "positions", pos)
        sizes = {s: int(n) for s, n in self.n_samples.items() if int(n) > 0}
        unknown = set(self.n_samples) - set(SPLITS)
        if unknown:
            raise ValueError(f"LineShape.n_samples has unknown split(s) {sorted(unknown)}; valid: {SPLITS}")
        object.__setattr__(self, "n_samples", sizes)
        absent = [s for s in self.sample_losses if s not in sizes]
        if absent:
            raise ValueError(f"LineShape.sample_losses names {absent}, which have no samples")
        object.__setattr__(self, "sample_losses", tuple(s for s in SPLITS if s in self.sample_losses))

    @property
    def n_points(self) -> int:
        return int(self.positions.size)

    @property
    def splits(self) -> tuple[str, ...]:
        """The measured splits, in ``SPLITS`` order."""
        return tuple(s for s in SPLITS if s in self.n_samples)

    def size(self, split: str) -> int:
        """Samples of ``split`` (0 if it is not measured)."""
        return self.n_samples.get(split, 0)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LineShape) and np.array_equal(self.positions, other.positions)
                and dict(self.n_samples) == dict(other.n_samples) and self.sample_losses == other.sample_losses
                and self.per_step == other.per_step and self.interpolation == other.interpolation)


@dataclass(frozen=True)
class SplitLine:
    """One split of one line, on the full grid (NaN where not measured).

    Attributes:
        loss: ``[K]`` float64 mean loss over the split's samples (nats).
        accuracy: ``[K]`` float64 fraction of correct predictions (NaN where a loss has none).
        loss_at_update: mean loss at ``s = update_step`` (nats).
        slope0: exact ``dL/ds`` at s = 0 (forward-mode AD); NaN if not computed.
        sample_loss: ``[K, n]`` float32 per-sample losses (``batch``: ``n`` = slots, NaN-padded),
            or None when the sampler does not keep them.
        sample_slope0: ``[n]`` float64 exact per-sample slopes at 0, or None.
        sample_offset: index of the first sample of ``sample_loss`` in the split: a process of
            a measurement sharded over processes holds samples ``[offset, offset + n)``.
        interpolation_error: reduced evaluation (``nodes="chebyshev"``): the largest relative
            error of the interpolated mean loss at the line's check points (dimensionless); NaN
            for a line measured densely by design.
        sample_interpolation_error: the same for the per-sample losses, each relative to
            ``max(|ℓ_i|, L)`` at its point; NaN for a line measured densely by design.
    """

    loss: np.ndarray
    accuracy: np.ndarray
    loss_at_update: float
    slope0: float
    sample_loss: np.ndarray | None = None
    sample_slope0: np.ndarray | None = None
    sample_offset: int = 0
    interpolation_error: float = float("nan")
    sample_interpolation_error: float = float("nan")


@dataclass(frozen=True)
class LineRecord:
    """One measured line: where in training, which step, and every split's values.

    Attributes:
        step, epoch: training step and epoch of the line.
        lr: learning rate λ of the step.
        direction_norm: ``‖u‖/λ`` (= ‖g‖ for plain SGD, ‖buf‖ with momentum).
        update_step: ``‖u‖``, the distance along û the optimizer moved.
        splits: ``{"train" | "val" | "batch": SplitLine}`` of the measured splits.
        batch_ids: ``[B]`` int64 dataset ids of the direction batch (-1: unknown or padding),
            or None when the batch is not measured.
        dropout_seed: the seed of the line's dropout mask (``dropout="fixed"``), else None.
        interpolated: reduced evaluation (``nodes="chebyshev"``): True if the stored values
            are reconstructed from Chebyshev nodes, False if the line's error exceeded the
            bound and it was measured densely; None when the sampler measures every point.
    """

    step: int
    epoch: int
    lr: float
    direction_norm: float
    update_step: float
    splits: Mapping[str, SplitLine] = field(default_factory=dict)
    batch_ids: np.ndarray | None = None
    dropout_seed: int | None = None
    interpolated: bool | None = None

    def __getitem__(self, split: str) -> SplitLine:
        return self.splits[split]


@dataclass(frozen=True)
class DirectionsRecord:
    """The "all directions" mode (paper Fig. 8): M lines from one θ_t, one record per position.

    Attributes:
        step, epoch, lr: the training position (shared by the M lines).
        lines: the M ``LineRecord`` s, one per mini-batch direction.
    """

    step: int
    epoch: int
    lr: float
    lines: tuple[LineRecord, ...]


@dataclass(frozen=True)
class StepValues:
    """One split at one training step, at θ_t along the step's direction.

    Attributes:
        loss0: mean loss at s = 0 (nats).
        accuracy0: accuracy at s = 0 (NaN where a loss has none).
        slope0: exact ``dL/ds`` at s = 0 (nats per unit s).
        loss_at_update: mean loss at ``s = update_step``, where the optimizer went.
    """

    loss0: float
    accuracy0: float
    slope0: float
    loss_at_update: float


@dataclass(frozen=True)
class StepRecord:
    """The cheap per-step mode: what one training step did, at a few percent of a dense line.

    Attributes:
        step, epoch, lr, direction_norm, update_step: as in :class:`LineRecord`.
        splits: ``{"train" | "val" | "batch": StepValues}`` of the measured splits.
    """

    step: int
    epoch: int
    lr: float
    direction_norm: float
    update_step: float
    splits: Mapping[str, StepValues] = field(default_factory=dict)


@runtime_checkable
class LineSink(Protocol):
    """Where a sampler emits its records.

    ``open(shape)`` is called once, when the sampler is constructed and its settings are
    validated (a store sink creates or reopens its store there, so refused settings leave
    nothing behind); ``append(record)`` once per measured line. A sampler with ``per_step``
    calls ``append_step(record)`` with a ``StepRecord`` at every training step.
    """

    def open(self, shape: LineShape) -> None: ...

    def append(self, record: LineRecord) -> object: ...
