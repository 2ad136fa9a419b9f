"""``line_data_{step}.pickle`` files built the way the original sampler builds them (test helper).

The paper's ``SGDLineSampler.measure_exact_loss`` (data_sampling/source/optimizers/
sgd_line_sampler.py of the original repository), re-enacted without a model: per-sample losses
are known parabolas ``a_i (s - c)^2 + b_i`` plus tiny per-measurement noise (GPU
nondeterminism and the drift of the sampler's incremental parameter moves), and the grid is
built by the original's own steps:

* ring 0: ``arange(-si, 0, res)`` joined with ``arange(0, si, res)``, the update point
  ``update_step = (lr * direction_norm).item()`` appended (wherever it lies), 0.0 appended if
  missing, sorted;
* while the val, the train or (flattened, as the original does it) the batch losses of the ring
  just measured have their argmin at one of the ring's two ends, ring r = 1..4:
  ``arange(-si(r+1), -si·r, res)`` joined with ``arange(si·r, si(r+1), res)``, sorted;
* all rings' columns concatenated and put in ``argsort`` order of their positions;
* pickled as ``(train [N, K], val [N_val, K], positions [K], batch [B, K], update_step,
  direction_norm, is_extrapolation, step)`` with ``direction_norm`` a 0-d float32 tensor whose
  storage claims ``cuda:0`` and ``is_extrapolation`` False (the original's test
  ``remeasure == max_interval_enlargements`` can never hold).

Momentum runs write the same tuple; only the numbers differ (the direction is the momentum
buffer, so the batch slope at 0 is not ``-direction_norm``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.serialization

SI, RES, LR, MAX_INTERVAL_ENLARGEMENTS = 0.5, 0.006, 0.1, 5
NOISE = 1e-7  # nats: per measurement


@dataclass(frozen=True)
class LineSpec:
    """What one training step looks like: ``step``, the direction's norm ‖v‖ (so update_step =
    λ‖v‖) and ``minimum``, the s where the train and val losses are lowest."""

    step: int
    norm: float
    minimum: float


@dataclass(frozen=True)
class WrittenLine:
    """One written file and what it holds, as the sampler produced it.

    Attributes:
        path: the file.
        step: the training step.
        positions: ``[K]`` float64 positions in file order (ascending, the update point in).
        update_step: the float pickled (s).
        update_column: the column of the update point's measurement (the appended one).
        direction_norm: the float32 norm as a Python float.
        rings: enlargement rings measured (0 = only ring 0).
        train, val, batch: ``[n, K]`` float64 per-sample losses as pickled.
    """

    path: Path
    step: int
    positions: np.ndarray
    update_step: float
    update_column: int
    direction_norm: float
    rings: int
    train: np.ndarray
    val: np.ndarray
    batch: np.ndarray


def ring_locations(ring: int, si: float = SI, res: float = RES) -> list[float]:
    """The original's positions of one ring, left half-lattice first (unsorted, as built)."""
    left = list(np.arange(-si * (ring + 1), -si * ring, res))
    left.extend(np.arange(si * ring, si * (ring + 1), res))
    return left


def _ends_at_edge(train: np.ndarray, val: np.ndarray, batch: np.ndarray) -> bool:
    """The original's enlargement test on the ring just measured, its quirks kept."""
    i = int(np.mean(val, 0).argmin())
    if i == 0 or i + 1 == val.shape[1]:
        return True
    i = int(np.mean(train, 0).argmin())
    if i == 0 or i + 1 == train.shape[1]:
        return True
    i = int(batch.argmin())  # flattened index, compared with the number of rows: as in the original
    return i == 0 or i + 1 == len(batch)


def write_line(folder: Path, spec: LineSpec, rng: np.random.Generator, monkeypatch, *, n_train: int = 40,
               n_val: int = 12, batch_size: int = 8, momentum: bool = False, tensors: bool = False,
               transposed: bool = False, extrapolated: bool = False, positions_dtype: type = np.float64,
               lr: float = LR) -> WrittenLine:
    """Write ``line_data_{spec.step}.pickle`` into ``folder`` like the original sampler.

    Args:
        spec: the step, the direction norm and the loss minimum.
        rng: draws the per-sample curvatures, offsets and the measurement noise.
        monkeypatch: pytest's, to make torch record the norm's storage as ``cuda:0``.
        momentum: batch slope at 0 of ``-0.6 * norm`` instead of plain SGD's ``-norm``.
        tensors, transposed, extrapolated, positions_dtype: variations the original did not
            write (per-sample torch tensors, ``[K, n]`` arrays, a set flag, rounded positions).
    """
    norm = torch.tensor(spec.norm, dtype=torch.float32)
    update_step = (lr * norm).item()
    curv = {s: rng.uniform(0.5, 2.0, n) for s, n in (("train", n_train), ("val", n_val), ("batch", batch_size))}
    base = {s: rng.uniform(1.0, 2.0, a.size) for s, a in curv.items()}
    slope = (0.6 if momentum else 1.0) * spec.norm  # -dL_batch/ds at 0
    centre = {"train": spec.minimum, "val": spec.minimum, "batch": slope / (2 * curv["batch"].mean())}

    locations, parts, update_index, rings = [], {s: [] for s in curv}, -1, 0
    for ring in range(MAX_INTERVAL_ENLARGEMENTS):
        here = ring_locations(ring)
        if ring == 0:
            here.append(update_step)
            if 0.0 not in here:
                here.append(0.0)
        here = list(np.sort(here))
        if ring == 0:
            update_index = len(locations) + max(i for i, x in enumerate(here) if x == update_step)
        locations.extend(here)
        s = np.asarray(here)
        for split in curv:
            values = curv[split][:, None] * (s[None] - centre[split]) ** 2 + base[split][:, None]
            parts[split].append(values + rng.normal(0.0, NOISE, values.shape))
        rings = ring
        if not _ends_at_edge(*(parts[x][-1] for x in ("train", "val", "batch"))):
            break
    order = np.argsort(locations)
    positions = np.array(locations)[order]
    arrays = {split: np.hstack(parts[split])[:, order] for split in curv}
    column = int(np.flatnonzero(order == update_index)[0])

    stored = {s: (a.T if transposed else a) for s, a in arrays.items()}
    if tensors:
        stored = {s: torch.from_numpy(np.ascontiguousarray(a)) for s, a in stored.items()}
    obj = (stored["train"], stored["val"], positions.astype(positions_dtype), stored["batch"], update_step, norm,
           extrapolated, spec.step)
    path = folder / f"line_data_{spec.step}.pickle"
    with monkeypatch.context() as m:  # the original's norm lived on the GPU
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        path.write_bytes(pickle.dumps(obj))
    return WrittenLine(path, spec.step, positions, update_step, column, float(norm), rings,
                       arrays["train"], arrays["val"], arrays["batch"])


# Eight steps of a ResNet-20-like run (interval ±0.5, resolution 0.006, λ = 0.1): update points
# inside the interval, right next to 0 (0.005), beyond it (0.647), and exactly on the first
# point of ring 1 (0.5 = 0.1 · 5.0 in float32); minima that need ring 1 on either side and rings
# 1 and 2.
EIGHT_STEPS = (
    LineSpec(0, 2.0, 0.15),
    LineSpec(1, 6.47, 0.3),
    LineSpec(2, 5.0, 0.7),
    LineSpec(3, 1.0, -0.6),
    LineSpec(4, 3.3, 1.3),
    LineSpec(5, 0.05, 0.02),
    LineSpec(6, 1.5, 0.1),
    LineSpec(7, 4.0, 0.4),
)
EIGHT_STEPS_RINGS = (0, 0, 1, 1, 2, 0, 0, 0)


def write_run(folder: Path, monkeypatch, *, seed: int = 12, specs: tuple[LineSpec, ...] = EIGHT_STEPS,
              **kwargs) -> list[WrittenLine]:
    """One file per spec in ``folder`` (created), in step order, from one seeded generator."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    return [write_line(folder, spec, rng, monkeypatch, **kwargs) for spec in specs]
