"""Synthetic stores with known answers, written with the real StoreWriter (test helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from losslines.store import StoreLayout, StoreWriter

GRID = np.round(np.arange(-83, 84) * 0.006, 12)


def write_parabola_store(
    path: Path,
    *,
    n_lines: int = 12,
    n_train: int = 64,
    n_val: int = 16,
    batch: int = 16,
    sample_losses: tuple[str, ...] = ("train", "batch"),
    sample_dtype: str = "float32",
    slopes: bool = True,
    directions: int = 0,
    lr: float = 0.1,
    seed: int = 0,
    close: bool = True,
    line_chunk: int = 4,
    per_step: int = 0,
) -> dict:
    """A store whose every per-sample loss is an exact parabola ``a_i s^2 + b_i s + c_i``.

    ``per_step`` > 0 adds a ``steps/`` group of that many steps, each an exact parabola
    ``L(s) = a s^2 + b s + c`` (truth: ``step_a``, ``step_b``, ``step_c``, ``step_update``).

    Returns the ground truth: per-line ``b_batch`` [L, B], ``b_train`` [L, N], ``s_opt`` [L], ...
    """
    rng = np.random.default_rng(seed)
    layout = StoreLayout(n_points=GRID.size, n_train=n_train, n_val=n_val, batch_size=batch,
                         sample_losses=sample_losses, sample_dtype=sample_dtype, n_directions=directions,
                         line_chunk=line_chunk, sample_block=32, per_step=per_step > 0, step_chunk=8)
    ids = np.arange(1000, 1000 + n_train)
    writer = StoreWriter.create(path, layout, positions=GRID, sample_ids={"train": ids, "val": np.arange(n_val)} if n_val
                                else {"train": ids}, attrs={"config": {"name": "synthetic"}})
    truth = {k: [] for k in ("b_batch", "b_train", "s_opt", "a", "b", "c", "update_step", "batch_ids")}
    s = GRID[:, None]
    for t in range(n_lines):
        a_t, a_b, a_v = rng.uniform(0.5, 3.0, (3, max(n_train, batch, n_val, 1)))
        b_t = rng.normal(-0.3, 0.3, n_train)
        b_b = rng.normal(-2.0, 0.4, batch)
        c_t, c_b = rng.uniform(0.5, 2.5, (2, max(n_train, batch)))
        per_train = a_t[:n_train] * s**2 + b_t * s + c_t[:n_train]  # [K, N]
        per_batch = a_b[:batch] * s**2 + b_b * s + c_b[:batch]
        per_val = a_v[:n_val] * s**2 - 0.1 * s + 2.0
        A, B, C = a_t[:n_train].mean(), b_t.mean(), c_t[:n_train].mean()
        g = -b_b.mean()
        update = np.float32(lr * np.float32(g))
        bids = rng.choice(ids, size=batch, replace=False)
        rec = {"step": t * 10, "epoch": t // 5, "lr": lr, "direction_norm": g, "update_step": update,
               "loss_train": per_train.mean(1), "loss_batch": per_batch.mean(1), "acc_train": np.full(GRID.size, 0.5),
               "loss_at_update_train": A * update**2 + B * update + C, "batch_ids": bids}
        if n_val:
            rec["loss_val"] = per_val.mean(1)
        if slopes:
            rec.update(slope0_train=B, slope0_batch=b_b.mean())
        if "train" in sample_losses:
            rec["sample_loss_train"] = per_train
        if "batch" in sample_losses:
            rec["sample_loss_batch"] = per_batch
        writer.append(rec)
        for k, v in (("b_batch", b_b), ("b_train", b_t), ("s_opt", -B / (2 * A)), ("a", A), ("b", B), ("c", C),
                     ("update_step", update), ("batch_ids", bids)):
            truth[k].append(v)
    for p in range(2 if directions else 0):
        vert = rng.uniform(0.05, 0.3, directions)
        norms = rng.uniform(1, 3, directions)
        writer.append_directions({"step": p * 100, "direction_norm": norms,
                                  "loss_train": 2.0 * (GRID[None, :] - vert[:, None]) ** 2 + 1.0})
    for k in ("step_a", "step_b", "step_c", "step_update"):
        truth[k] = []
    for t in range(per_step):
        a, b, c = rng.uniform(0.5, 2.0), rng.uniform(-2.0, -0.5), rng.uniform(1.0, 3.0)
        update = rng.uniform(0.1, 2.0) * (-b / (2 * a))  # from short steps to overshoots
        entry = {"step": t, "lr": lr, "direction_norm": update / lr, "update_step": update}
        for split in ("train", "batch"):
            entry.update({f"loss0_{split}": c, f"slope0_{split}": b, f"loss_at_update_{split}": a * update**2 + b * update + c})
        writer.append_step(entry)
        for k, v in (("step_a", a), ("step_b", b), ("step_c", c), ("step_update", update)):
            truth[k].append(v)
    if close:
        writer.close()
    else:
        writer.flush()
        truth["writer"] = writer
    truth = {k: (np.asarray(v) if k != "writer" else v) for k, v in truth.items()}
    truth["path"] = path
    return truth

