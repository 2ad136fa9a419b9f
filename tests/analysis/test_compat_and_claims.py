"""``--compat original`` (the original analysis's definitions) and the paper's-claims section."""

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from losslines.analysis.analyze import analyze_store
from losslines.analysis.compat import distance_window_index, nearest_grid_loss
from losslines.analysis.metrics.paper_claims import CV_CONSTANT, _constant_ratio, _overshoot, phase_bounds
from losslines.analysis.results import AnalysisOptions
from losslines.analysis.steprules import pal_step
from losslines.store import open_store

from analysis_stores import GRID, write_parabola_store

OPTIONS = dict(sgd_lrs=(0.1,), n_draws=4, formats=("png",))


def _stored(path):
    store = open_store(path)
    return {k: np.asarray(store[k][:], dtype=np.float64) for k in
            ("loss_train", "loss_batch", "slope0_batch", "slope0_train", "direction_norm", "update_step")}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    truth = write_parabola_store(root / "store.zarr", n_lines=10, n_train=64, batch=16)
    compat = analyze_store(truth["path"], root / "compat", options=AnalysisOptions(compat="original", **OPTIONS),
                           figures=False)
    default = analyze_store(truth["path"], root / "default", options=AnalysisOptions(**OPTIONS), figures=False)
    return truth, compat, default


def test_s_opt_is_the_unrefined_argmin_of_the_curve_pooled_with_the_direction_batch(reports):
    truth, compat, default = reports
    a = _stored(truth["path"])
    pooled = (64 * a["loss_train"] + 16 * a["loss_batch"]) / 80
    np.testing.assert_array_equal(compat.result.per_line["s_opt"], GRID[np.argmin(pooled, axis=1)])
    assert not compat.result.per_line["refined"].any()
    # the default is the refined minimum of the measurement set's curve alone
    np.testing.assert_allclose(default.result.per_line["s_opt"], truth["s_opt"], atol=2e-5)
    assert np.abs(compat.result.per_line["s_opt"] - truth["s_opt"]).max() > 1e-3  # the pooling moved it
    np.testing.assert_allclose(compat.result.per_line["ratio"], GRID[np.argmin(pooled, axis=1)] / a["direction_norm"])


def test_pal_uses_the_loss_at_the_grid_point_nearest_to_mu(reports):
    truth, compat, default = reports
    a = _stored(truth["path"])
    j0, jmu = np.argmin(np.abs(GRID)), np.argmin(np.abs(GRID - 0.1))
    assert GRID[jmu] != 0.1  # 0.102: the nearest point is not mu itself
    expected = pal_step(a["loss_batch"][:, j0], a["loss_batch"][:, jmu], a["slope0_batch"], 0.1)
    np.testing.assert_allclose(compat.result.rules["pal(mu=0.1)"].step, expected, rtol=1e-9)
    assert not np.allclose(default.result.rules["pal(mu=0.1)"].step, expected, rtol=1e-6)


def test_distances_compare_the_66_points_around_zero_unweighted(reports):
    truth, compat, _ = reports
    lt = _stored(truth["path"])["loss_train"]
    idx = distance_window_index(GRID)
    assert idx.size == 66 and GRID[idx[0]] == pytest.approx(-0.198) and GRID[idx[-1]] == pytest.approx(0.192)
    shifted = lt[:, idx] - lt.min(axis=1, keepdims=True)
    d = np.abs(shifted[:, None, :] - shifted[None, :, :]).mean(axis=2)
    summary = json.loads(compat.metrics.read_text())
    n = d.shape[0]
    assert summary["distances"]["mean_all"] == pytest.approx(d[np.triu_indices(n, 1)].mean(), rel=1e-9)
    assert summary["distances"]["window_points"] == 66


def test_the_report_puts_the_default_numbers_beside_the_original_ones(reports):
    _, compat, default = reports
    c = json.loads(compat.metrics.read_text())
    d = json.loads(default.metrics.read_text())
    assert c["options"]["compat"] == "original" and "compat" not in d
    numbers = {n["quantity"]: n for n in c["compat"]["numbers"]}
    assert numbers["median s_opt"]["default"] == d["minimum"]["s_opt"]["median"]
    assert numbers["median s_opt"]["original"] == c["minimum"]["s_opt"]["median"]
    assert numbers["mean line-to-line distance D (all pairs)"]["default"] == d["distances"]["mean_all"]
    assert c["compat"]["pool"] == {"n_train": 64, "n_batch": 16}
    assert len(c["compat"]["definitions"]) == 4
    text = compat.report.read_text()
    assert "## Compatibility with the original analysis" in text and "why the default is the better" in text
    assert "\\|s\\| <= w" in text  # a pipe inside a table cell is escaped


def test_compat_refuses_a_store_without_direction_batch_losses(tmp_path):
    truth = write_parabola_store(tmp_path / "s.zarr", n_lines=3)
    shutil.rmtree(truth["path"] / "loss_batch")  # the fixture always writes it: a store without one
    with pytest.raises(ValueError, match="has no 'loss_batch'; analyse it without --compat"):
        analyze_store(truth["path"], tmp_path / "out", options=AnalysisOptions(compat="original", **OPTIONS),
                      figures=False)


def test_the_cli_flag_and_a_bad_value(reports, tmp_path):
    truth, _, _ = reports
    cmd = [sys.executable, "-m", "losslines", "analyze", str(truth["path"]), "--out", str(tmp_path / "r"),
           "--no-figures", "--draws", "4"]
    ok = subprocess.run(cmd + ["--compat", "original"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["options"]["compat"] == "original"
    bad = subprocess.run(cmd + ["--compat", "paper"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'paper'" in bad.stderr
    with pytest.raises(ValueError, match="compat must be 'none' or 'original'"):
        AnalysisOptions(compat="paper")


def test_helpers_on_hand_made_grids():
    grid = np.array([-0.3, -0.1, 0.0, 0.11, 0.2])
    losses = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [np.nan, 1.0, 2.0, np.nan, 3.0]])
    np.testing.assert_array_equal(nearest_grid_loss(grid, losses, 0.1), [2.0, 2.0])  # unmeasured 0.11 skipped
    with pytest.raises(ValueError, match="66 grid points around 0"):
        distance_window_index(grid)
    assert phase_bounds(np.array([0.1] * 8 + [0.01] * 3), 4) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9), (9, 10),
                                                                   (10, 11)]
    assert phase_bounds(np.full(5, np.nan), 2) == [(0, 2), (2, 5)]  # an unknown lr is one run


def _fake(per_line):
    n = len(next(iter(per_line.values())))
    return SimpleNamespace(per_line={"step": np.arange(n) * 10.0, "lr": np.full(n, 0.1), **per_line})


def test_claim_verdicts_follow_the_measured_numbers():
    steady = _fake({"ratio": np.r_[np.full(20, 0.5), np.full(20, 0.2)] * (1 + 0.01 * np.sin(np.arange(40)))})
    claim = _constant_ratio(steady, 2)
    assert claim["holds"] and claim["median_cv"] < 0.02 and len(claim["phases"]) == 2
    noisy = _fake({"ratio": np.random.default_rng(0).uniform(0.1, 1.0, 40)})
    assert not _constant_ratio(noisy, 2)["holds"] and _constant_ratio(noisy, 2)["median_cv"] > CV_CONSTANT
    assert "overshoots" in _overshoot(_fake({"overshoot": np.full(9, 1.5)}))["verdict"]
    assert "undershoots" in _overshoot(_fake({"overshoot": np.full(9, 0.5)}))["verdict"]
    assert "exact line search" in _overshoot(_fake({"overshoot": np.full(9, 1.05)}))["verdict"]


def test_claims_on_exact_parabolas(reports):
    _, _, default = reports
    c = json.loads(default.metrics.read_text())["claims"]
    assert c["parabolic"]["holds"] is True and c["parabolic"]["mae2"]["median"] < 1e-5
    for key in ("constant_ratio", "step_versus_optimum", "batch_size_learning_rate"):
        assert c[key]["verdict"] and c[key]["number"] != "n/a", key
    text = default.report.read_text()
    assert "## The paper's claims, re-measured" in text and "1. lines are nearly parabolic" in text
