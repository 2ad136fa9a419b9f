"""Per-channel standardisation of the two splits (pure: tensors in, tensors and a record out).

Modes (``normalize=`` of :func:`losslines.data.load_dataset`):

* ``"train"`` (default): mean and std per channel from the **training subset**, applied to
  both splits. The training split then has mean 0 and std 1 per channel.
* ``"per_split"``: each split standardised by its own statistics.
* ``"none"``: inputs left as loaded (images scaled to [0, 1]).

A channel is axis 1 of ``[N, C, H, W]`` (statistics over N, H, W); for flat inputs ``[N, D]``
each feature is its own channel. Statistics are computed in float64; std is the population std
(ddof 0). A constant channel (std 0) is divided by 1 instead, and listed in the record under
``"constant_channels"`` so that the choice is visible.
"""

from __future__ import annotations

import torch

NORMALIZE_MODES = ("train", "per_split", "none")


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std per channel.

    Args:
        x: ``[N, C, ...]`` with N >= 1.

    Returns:
        ``(mean [C], std [C])`` float64.
    """
    if x.shape[0] == 0:
        raise ValueError("cannot compute normalisation statistics of an empty split")
    dims = [0] + list(range(2, x.dim()))
    x64 = x.to(torch.float64)
    mean = x64.mean(dim=dims)
    std = x64.var(dim=dims, correction=0).sqrt()
    return mean, std


def apply_stats(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel (std 0 treated as 1), returned as float32.

    Args:
        x: ``[N, C, ...]``.
        mean, std: ``[C]``.
    """
    safe = torch.where(std > 0, std, torch.ones_like(std))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = (x.to(torch.float64) - mean.view(shape)) / safe.view(shape)
    return out.to(torch.float32)


def _stats_record(mean: torch.Tensor, std: torch.Tensor, n: int, what: str) -> dict:
    return {
        "mean": mean.tolist(),
        "std": std.tolist(),
        "computed_on": f"{what} ({n} samples), per channel, float64, population std",
        "constant_channels": [int(i) for i in torch.nonzero(std == 0).flatten().tolist()],
    }


def normalize_splits(
    train: torch.Tensor, val: torch.Tensor, mode: str, *, scale: str
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Standardise both splits according to ``mode``.

    Args:
        train: ``[N_train, C, ...]`` float32 inputs (already scaled, e.g. to [0, 1]).
        val: ``[N_val, C, ...]`` float32 inputs (N_val may be 0).
        mode: one of ``NORMALIZE_MODES``.
        scale: description of the scaling applied before (recorded, e.g. ``"uint8 / 255"``).

    Returns:
        ``(train, val, record)``: normalised float32 tensors and a JSON-able record of the
        mode and statistics.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"unknown normalize mode {mode!r}; valid modes: {', '.join(NORMALIZE_MODES)}")
    record: dict = {"mode": mode, "scale": scale}
    if mode == "none":
        return train, val, record
    if mode == "train":
        mean, std = channel_stats(train)
        record.update(_stats_record(mean, std, train.shape[0], "training subset"))
        return apply_stats(train, mean, std), apply_stats(val, mean, std), record
    # per_split
    mean_t, std_t = channel_stats(train)
    record["train"] = _stats_record(mean_t, std_t, train.shape[0], "training subset")
    out_train = apply_stats(train, mean_t, std_t)
    if val.shape[0] == 0:
        record["val"] = None
        return out_train, val, record
    mean_v, std_v = channel_stats(val)
    record["val"] = _stats_record(mean_v, std_v, val.shape[0], "held-out split")
    return out_train, apply_stats(val, mean_v, std_v), record
