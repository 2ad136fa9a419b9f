"""The engine-store contract: LineShape's checks and the one plain-SGD slope rule."""

from __future__ import annotations

import numpy as np
import pytest

from losslines.records import SGD_SLOPE_RTOL, LineShape, sgd_slope_mismatch


def test_line_shape_normalises_and_checks_its_sizes():
    shape = LineShape(positions=[0.0, 0.5], n_samples={"val": 3, "train": 4, "batch": 0},
                      sample_losses=("val", "train"))
    assert shape.positions.dtype == np.float64 and shape.n_points == 2
    assert dict(shape.n_samples) == {"val": 3, "train": 4} and shape.splits == ("train", "val")
    assert shape.sample_losses == ("train", "val") and shape.size("batch") == 0
    assert shape == LineShape(positions=np.array([0.0, 0.5]), n_samples={"train": 4, "val": 3},
                              sample_losses=("train", "val"))
    assert shape != LineShape(positions=[0.0, 0.25], n_samples={"train": 4, "val": 3}, sample_losses=("train", "val"))
    with pytest.raises(ValueError, match="unknown split"):
        LineShape(positions=[0.0], n_samples={"test": 3})
    with pytest.raises(ValueError, match="which have no samples"):
        LineShape(positions=[0.0], n_samples={"train": 3}, sample_losses=("val",))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        LineShape(positions=[], n_samples={"train": 3})


def test_the_plain_sgd_slope_rule_on_scalars_and_arrays():
    norm = 2.0
    assert not sgd_slope_mismatch(-norm, norm)
    assert not sgd_slope_mismatch(-norm * (1 + 0.9 * SGD_SLOPE_RTOL), norm)
    assert sgd_slope_mismatch(-norm * (1 + 1.1 * SGD_SLOPE_RTOL), norm)
    assert sgd_slope_mismatch(norm, norm)  # the wrong sign
    assert not sgd_slope_mismatch(np.nan, norm) and not sgd_slope_mismatch(-1.0, np.inf)  # cannot be judged
    bad = sgd_slope_mismatch(np.array([-2.0, -2.1, np.nan]), np.array([2.0, 2.0, 2.0]))
    assert bad.tolist() == [False, True, False] and isinstance(sgd_slope_mismatch(-2.0, 2.0), bool)
