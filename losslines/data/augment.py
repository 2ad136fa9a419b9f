"""Training-batch augmentation: ``"none"`` or ``"crop_flip"`` (pure, generator-driven).

``crop_flip`` is the standard CIFAR recipe: pad every image with ``pad`` = 4 pixels of zeros on
each side, crop a random ``H x W`` window, and flip it horizontally with probability 1/2. The
padding value is 0 *in the tensor given*, i.e. the per-channel mean when the inputs are
normalised with training statistics.

Augmentation is for training batches only; the measurement data of a line (training subset,
held-out split, direction batch) is never augmented.
"""

from __future__ import annotations

import torch

AUGMENTATIONS = ("none", "crop_flip")
CROP_PAD = 4


def draw_crop_flip(batch: int, generator: torch.Generator, pad: int = CROP_PAD) -> tuple[torch.Tensor, ...]:
    """Random crop offsets and flip flags for ``batch`` images.

    Returns:
        ``(dy [B], dx [B], flip [B])``: int64 offsets in ``[0, 2*pad]`` into the padded image
        and bool flags, on the generator's device.
    """
    device = generator.device
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=device)
    flip = torch.rand((batch,), generator=generator, device=device) < 0.5
    return dy, dx, flip


def crop_flip(
    inputs: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = CROP_PAD
) -> torch.Tensor:
    """Apply given crops and flips in one gather (no per-image loop).

    Args:
        inputs: ``[B, C, H, W]``.
        dy, dx: ``[B]`` int64 window offsets into the zero-padded ``[H + 2 pad, W + 2 pad]`` image.
        flip: ``[B]`` bool, flip horizontally after cropping.

    Returns:
        ``[B, C, H, W]``, same dtype and device as ``inputs``.
    """
    b, _, h, w = inputs.shape
    dev = inputs.device
    dy, dx, flip = dy.to(dev), dx.to(dev), flip.to(dev)
    padded = torch.nn.functional.pad(inputs, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=dev)[None, :]  # [B, H]
    col_offsets = torch.arange(w, device=dev)[None, :].expand(b, w)
    col_offsets = torch.where(flip[:, None], (w - 1) - col_offsets, col_offsets)
    cols = dx[:, None] + col_offsets  # [B, W]
    batch_index = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def augment_batch(inputs: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Augment one TRAINING batch.

    Args:
        inputs: ``[B, C, H, W]`` for ``"crop_flip"``; any shape for ``"none"``.
        kind: ``"none"`` (returns ``inputs`` itself) or ``"crop_flip"``.
        generator: source of the random crops and flips (a CPU or device generator); the same
            generator state gives the same augmentation.

    Returns:
        Tensor of the same shape, dtype and device as ``inputs``.

    Raises:
        ValueError: unknown kind, or ``"crop_flip"`` on inputs that are not ``[B, C, H, W]``.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; valid: {', '.join(AUGMENTATIONS)}")
    if kind == "none":
        return inputs
    if inputs.dim() != 4:
        raise ValueError(f"augmentation 'crop_flip' needs image batches [B, C, H, W], got shape {tuple(inputs.shape)}")
    dy, dx, flip = draw_crop_flip(inputs.shape[0], generator)
    return crop_flip(inputs, dy, dx, flip)
