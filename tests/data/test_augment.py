"""augment_batch: shapes, determinism, and the vectorised crop/flip against a per-image oracle."""

from __future__ import annotations

import pytest
import torch

from losslines.data import augment_batch
from losslines.data.augment import CROP_PAD, crop_flip, draw_crop_flip


def _oracle(x, dy, dx, flip, pad=CROP_PAD):
    out = []
    h, w = x.shape[-2:]
    for img, y0, x0, f in zip(x, dy.tolist(), dx.tolist(), flip.tolist()):
        padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
        crop = padded[:, y0 : y0 + h, x0 : x0 + w]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(6, 3, 8, 8), (5, 1, 32, 32), (4, 2, 5, 7)])
def test_crop_flip_matches_per_image_oracle(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    dy, dx, flip = draw_crop_flip(shape[0], torch.Generator().manual_seed(1))
    assert torch.equal(crop_flip(x, dy, dx, flip), _oracle(x, dy, dx, flip))


def test_crop_flip_edge_cases_oracle():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    center = torch.full((2,), CROP_PAD)
    assert torch.equal(crop_flip(x, center, center, torch.tensor([False, False])), x)
    assert torch.equal(crop_flip(x, center, center, torch.tensor([True, False]))[0], x[0].flip(-1))
    corner = crop_flip(x, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), torch.tensor([False, False]))
    assert torch.equal(corner, torch.zeros_like(x))  # all padding when shifted by >= the image size


def test_augment_batch_is_deterministic_under_a_generator_and_keeps_shape():
    x = torch.randn(16, 3, 32, 32)
    a = augment_batch(x, "crop_flip", torch.Generator().manual_seed(5))
    b = augment_batch(x, "crop_flip", torch.Generator().manual_seed(5))
    c = augment_batch(x, "crop_flip", torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_augment_batch_advances_the_generator():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    first, second = augment_batch(x, "crop_flip", g), augment_batch(x, "crop_flip", g)
    assert not torch.equal(first, second)


def test_none_is_identity_and_consumes_no_randomness():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    x = torch.randn(4, 10)
    assert augment_batch(x, "none", g) is x
    assert torch.equal(g.get_state(), state)


def test_bad_kind_and_shape():
    g = torch.Generator()
    with pytest.raises(ValueError, match="unknown augmentation 'flip'; valid: none, crop_flip"):
        augment_batch(torch.zeros(2, 1, 4, 4), "flip", g)
    with pytest.raises(ValueError, match=r"needs image batches \[B, C, H, W\]"):
        augment_batch(torch.zeros(2, 16), "crop_flip", g)


def test_draws_cover_all_offsets_and_flip_half_the_time():
    dy, dx, flip = draw_crop_flip(4000, torch.Generator().manual_seed(0))
    assert sorted(dy.unique().tolist()) == list(range(2 * CROP_PAD + 1)) == sorted(dx.unique().tolist())
    assert 0.45 < flip.float().mean().item() < 0.55
