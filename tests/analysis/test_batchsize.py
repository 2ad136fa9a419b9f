"""Batch-size study (Fig. 7) on known per-sample parabolas: slopes match the closed form."""

import numpy as np
import pytest

from losslines.analysis.batchsize import (
    batch_slopes,
    default_batch_sizes,
    draw_sample_batches,
    expected_ratio,
    super_batch_pool,
)
from losslines.analysis.slopes import slope_stencil

GRID = np.round(np.arange(-83, 84) * 0.006, 12)


def test_slopes_of_drawn_batches_match_closed_form():
    rng = np.random.default_rng(0)
    n_b, n = 32, 400
    b_batch = rng.normal(-2.0, 0.5, n_b)  # per-sample slopes ℓ_i'(0) of the batch samples
    b_train = rng.normal(0.0, 0.5, n)
    a = rng.uniform(0.5, 3.0, n_b + n)
    slopes_true = np.concatenate([b_batch, b_train])
    per_sample = a[None] * GRID[:, None] ** 2 + slopes_true[None] * GRID[:, None] + 2.3  # [K, n_B + N]
    st = slope_stencil(GRID)
    d = st.apply(per_sample.astype(np.float32), axis=0)
    sizes = (4, 8, 16, 32, 64, 128)
    draws = draw_sample_batches(n_b, np.arange(n), sizes, 10, np.random.default_rng(5))
    got = batch_slopes(d[:n_b], d[n_b:], draws)
    for i, dr in enumerate(draws):
        closed = (b_batch[dr.batch_slots].sum(1) + b_train[dr.train_index].sum(1)) / sizes[i]
        np.testing.assert_allclose(got[i], closed, atol=2e-5)
        assert dr.batch_slots.shape == (10, min(sizes[i], n_b))
        for row in dr.train_index:
            assert np.unique(row).size == row.size  # without replacement
    ratio = got / b_batch.mean()
    assert np.all(np.abs(ratio[3] - 1.0) < 1e-4)  # b = n_B: the batch itself
    np.testing.assert_allclose(ratio[4:].mean(1), expected_ratio(np.array(sizes[4:]), n_b), rtol=0.15)


def test_pool_excludes_direction_batch_ids_and_draws_are_seeded():
    ids = np.arange(100, 110)
    pool = super_batch_pool(ids, np.array([101, 105, -1]))
    assert 1 not in pool and 5 not in pool and pool.size == 8
    d1 = draw_sample_batches(4, pool, (2, 6), 3, np.random.default_rng([1, 7]))
    d2 = draw_sample_batches(4, pool, (2, 6), 3, np.random.default_rng([1, 7]))
    assert all(np.array_equal(x.train_index, y.train_index) and np.array_equal(x.batch_slots, y.batch_slots)
               for x, y in zip(d1, d2))
    with pytest.raises(ValueError, match="impossible"):
        draw_sample_batches(4, pool, (13,), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="training losses"):
        batch_slopes(np.ones(4), None, d1)


def test_default_sizes_and_expected_ratio():
    assert default_batch_sizes(128, 4000) == (16, 32, 64, 128, 256, 512, 1024)
    assert default_batch_sizes(128, 200) == (16, 32, 64, 128, 256)
    np.testing.assert_allclose(expected_ratio(np.array([64, 128, 512]), 128), [1, 1, 0.25])


def test_subsets_are_uniform_without_replacement():
    from losslines.analysis.batchsize import _subsets

    rng = np.random.default_rng(0)
    draws = _subsets(10, 3, 20000, rng)
    assert all(np.unique(row).size == 3 for row in draws[:100])
    counts = np.bincount(draws.ravel(), minlength=10) / draws.size
    np.testing.assert_allclose(counts, 0.1, atol=0.005)  # every sample equally likely
