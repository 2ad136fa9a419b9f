"""The batch-size study takes the exact per-sample slopes at 0 a format 2 store keeps, falls back
to the grid stencil where a store has none (format 1, imports), and says which it used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import losslines
from losslines.analysis.batchsize import batch_slopes, draw_sample_batches
from losslines.analysis.slopes import slope_stencil
from losslines.runner.driver import run
from losslines.store.reader import open_store

V1_STORE = Path(__file__).parents[1] / "store" / "data" / "v1_store.zarr"


@pytest.fixture(scope="module")
def measured(tmp_path_factory, tiny_config) -> Path:
    tmp = tmp_path_factory.mktemp("exact_slopes")
    cfg = tiny_config(tmp, "train.momentum=0.0", "train.steps=8", "train.checkpoint_every=0")
    assert run(cfg, progress=False).status == "complete"
    return Path(cfg.store.path)


def test_exact_slopes_feed_the_study_where_the_store_has_them(measured):
    result = losslines.compute(measured)
    summary = result.summary()["batch_size"]
    store = open_store(measured)
    n = store.committed_lines
    assert summary["lines_with_exact_slopes"] == n and summary["lines_with_stencil_slopes"] == 0
    assert summary["method"].startswith("the exact per-sample slopes")
    study = result.outputs["batch_size"].value
    exact_b = store["sample_slope0_batch"].read().astype(np.float64)
    # the direction batch's own slope is the mean of its exact per-sample slopes = the stored slope0_batch
    np.testing.assert_allclose(study.batch_slope, np.nanmean(exact_b, axis=1), rtol=1e-12)
    np.testing.assert_allclose(study.batch_slope, store["slope0_batch"].read(), rtol=1e-5)
    # plain SGD: the batch slope is -‖g‖ (exactly, up to float32 storage), the stencil only roughly
    np.testing.assert_allclose(study.batch_slope, -store["direction_norm"].read(), rtol=1e-5)
    err = summary["stencil_relative_error"]
    assert err["n"] == n and err["median"] > 0  # the stencil's error against the exact slope, measured


def test_the_study_of_a_line_recomputed_from_the_stored_exact_slopes(measured):
    result = losslines.compute(measured)
    study = result.outputs["batch_size"].value
    store = open_store(measured)
    line = 2
    exact_b = store["sample_slope0_batch"][line].astype(np.float64)
    exact_t = store["sample_slope0_train"][line].astype(np.float64)
    from losslines.analysis.batchsize import super_batch_pool

    pool = super_batch_pool(store.sample_ids("train"), store["batch_ids"][line])
    options = result.options
    rng = np.random.default_rng([options.seed, line])
    draws = draw_sample_batches(exact_b.size, pool, tuple(int(b) for b in study.batch_sizes), options.n_draws, rng)
    np.testing.assert_allclose(study.slopes[line], batch_slopes(exact_b, exact_t, draws), rtol=1e-12)


def test_a_store_without_exact_slopes_uses_the_stencil_and_says_so():
    result = losslines.compute(V1_STORE)
    summary = result.summary()["batch_size"]
    store = open_store(V1_STORE)
    assert summary["lines_with_exact_slopes"] == 0 and summary["lines_with_stencil_slopes"] == store.committed_lines
    assert summary["method"].startswith("least-squares parabola") and summary["stencil_relative_error"]["n"] == 0
    stencil = slope_stencil(store.position)
    expected = stencil.apply(store["sample_loss_batch"].read(), axis=1)
    np.testing.assert_allclose(result.outputs["batch_size"].value.batch_slope, np.nanmean(expected, axis=1),
                               rtol=1e-12)
